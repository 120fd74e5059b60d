package master

import (
	"net/http"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

// masterLogPath is where Mesos's master attaches its log in the files API.
const masterLogPath = "/master/log"

// newFilesHandler is the master's files API: its own log at /master/log
// when Config.LogFile names one (the web UI's LOG link, mesos-cli), read
// with the agents' rules (a regular file only, capped reads) and, with
// --acls, access_mesos_logs; nothing else, sandboxes being the agents'.
func (m *Master) newFilesHandler() *sandbox.FilesHandler {
	opts := sandbox.FilesOptions{
		Logger: m.log,
		AuthorizeLog: func(r *http.Request) error {
			return m.cfg.ACLs.Check("access_mesos_logs", operatorPrincipal(r), "")
		},
	}
	if m.cfg.LogFile != "" {
		opts.Logs = map[string]string{masterLogPath: m.cfg.LogFile}
	}
	return sandbox.NewFilesHandler(opts)
}

// operatorFiles is LIST_FILES and READ_FILE: the files API's answers.
func (m *Master) operatorFiles(r *http.Request, call *masterpb.Call) (*masterpb.Response, error) {
	if m.cfg.LogFile == "" {
		path := call.GetListFiles().GetPath()
		if call.GetType() == masterpb.Call_READ_FILE {
			path = call.GetReadFile().GetPath()
		}
		return nil, httpErr(http.StatusNotFound, "No file or directory '%s' on the master: it attaches no files without --log_dir or --external_log_file (sandboxes are served by the agents' LIST_FILES and READ_FILE)", path)
	}
	if call.GetType() == masterpb.Call_LIST_FILES {
		entries, err := m.files.Browse(r, call.GetListFiles().GetPath())
		if err != nil {
			return nil, err
		}
		out := &masterpb.Response_ListFiles{}
		for _, e := range entries {
			out.FileInfos = append(out.FileInfos, &mesos.FileInfo{
				Path: proto.String(e.Path), Nlink: proto.Int32(int32(min(e.Nlink, 1<<31-1))), Size: proto.Uint64(uint64(max(e.Size, 0))),
				Mtime: timeInfo(e.Mtime), Mode: proto.Uint32(e.Mode), Uid: proto.String(e.UID), Gid: proto.String(e.GID),
			})
		}
		return &masterpb.Response{Type: masterpb.Response_LIST_FILES.Enum(), ListFiles: out}, nil
	}
	c := call.GetReadFile()
	if c.GetOffset() > 1<<62 {
		return nil, httpErr(http.StatusBadRequest, "'read_file.offset' %d is too large", c.GetOffset())
	}
	length := int64(-1)
	if c.Length != nil {
		length = int64(min(c.GetLength(), 1<<62))
	}
	data, size, err := m.files.Read(r, c.GetPath(), int64(c.GetOffset()), length)
	if err != nil {
		return nil, err
	}
	return &masterpb.Response{Type: masterpb.Response_READ_FILE.Enum(), ReadFile: &masterpb.Response_ReadFile{Size: proto.Uint64(uint64(size)), Data: data}}, nil
}
