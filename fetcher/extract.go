package fetcher

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

type archiveKind int

const (
	kindNone archiveKind = iota
	kindTar
	kindTarGz
	kindTarBz2
	kindTarXz
	kindZip
	kindGz
)

func (k archiveKind) String() string {
	return [...]string{"none", "tar", "tar.gz", "tar.bz2", "tar.xz", "zip", "gz"}[k]
}

// archiveSuffixes are Mesos's archive extensions, longest first so that
// x.tar.gz is a tarball and x.gz a single compressed file.
var archiveSuffixes = []struct {
	suffix string
	kind   archiveKind
}{
	{".tar.bz2", kindTarBz2},
	{".tar.gz", kindTarGz},
	{".tar.xz", kindTarXz},
	{".tbz2", kindTarBz2},
	{".tgz", kindTarGz},
	{".txz", kindTarXz},
	{".tar", kindTar},
	{".zip", kindZip},
	{".gz", kindGz},
}

// kindFromName detects the archive type from a file name or URL path (the
// caller strips the query, so `x.tgz?op=OPEN` is a tarball).
func kindFromName(name string) archiveKind {
	lower := strings.ToLower(name)
	for _, s := range archiveSuffixes {
		if strings.HasSuffix(lower, s.suffix) {
			return s.kind
		}
	}
	return kindNone
}

// sniffable reports whether content sniffing may decide the type: only for
// names without an extension (`/download?id=7`). A name with another
// extension is taken at its word: a .jar or .whl is a zip that must stay one.
func sniffable(name string) bool { return path.Ext(path.Base(name)) == "" }

// sniffKind recognises tar, zip and compressed tarballs by magic bytes.
// A compressed stream counts only when it holds a tar, since a bare
// compressed file without a .gz name has no name to decompress to.
func sniffKind(f *os.File) archiveKind {
	head := make([]byte, 512)
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	sr := func() io.Reader { return io.NewSectionReader(f, 0, 1<<62) }
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return kindZip
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		if zr, err := gzip.NewReader(sr()); err == nil && holdsTar(zr) {
			return kindTarGz
		}
	case bytes.HasPrefix(head, []byte("BZh")):
		if holdsTar(bzip2.NewReader(sr())) {
			return kindTarBz2
		}
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		if xr, err := newXZReader(sr()); err == nil && holdsTar(xr) {
			return kindTarXz
		}
	case isTarHeader(head):
		return kindTar
	}
	return kindNone
}

func holdsTar(r io.Reader) bool {
	head := make([]byte, 512)
	n, _ := io.ReadFull(r, head)
	return isTarHeader(head[:n])
}

// isTarHeader looks for the ustar magic (POSIX "ustar\0" and GNU "ustar ").
func isTarHeader(b []byte) bool { return len(b) >= 262 && string(b[257:262]) == "ustar" }

type extractLimits struct {
	maxBytes   int64
	maxEntries int
	// over makes the error when maxBytes is the request's budget rather
	// than the extraction limit, so the message names what to raise.
	over func(what string) error
}

var errLimit = errors.New("decompression limit exceeded")

// extractor unpacks one archive into an os.Root, the staging directory of
// extractArchive. Every path goes through the root, so `..`, absolute
// names and symlinks that leave it fail in the kernel-checked resolution;
// on top of that, names with `..`, absolute names, symlinks pointing
// outside, hard links to anything but a file already extracted, and
// device files or FIFOs are refused outright.
type extractor struct {
	ctx     context.Context
	root    *os.Root
	lim     extractLimits
	entries int
	bytes   int64
	dirs    map[string]dirMeta
	links   []string
	// current is the directory entry mkdir is making, already counted.
	current string
	// madeDirs counts directories made for names without an entry of
	// their own; they count against maxEntries too.
	madeDirs int
}

type dirMeta struct {
	mode  fs.FileMode
	mtime time.Time
}

type extractStats struct {
	entries int
	bytes   int64
}

// extractArchive unpacks f (of the given kind) into root by way of a
// staging directory inside it: the whole archive is extracted there, its
// symlinks checked, beforeCommit (when not nil) called, and only then is
// the tree moved into place (commit). Until then nothing of the archive is
// in the sandbox proper, so a refused archive, a cancelled fetch and a
// fetch child killed mid-extraction leave none of it: the staging
// directory is removed here, or by the agent (removeStaging) after a
// kill. gzName is the file name a single .gz decompresses to.
func extractArchive(ctx context.Context, f *os.File, kind archiveKind, gzName string, root *os.Root, lim extractLimits, beforeCommit func() error) (extractStats, error) {
	stg, err := newStage(root)
	if err != nil {
		return extractStats{}, err
	}
	defer stg.remove()
	tree, err := root.OpenRoot(stg.rel)
	if err != nil {
		return extractStats{}, fmt.Errorf("open the staging directory: %w", classifyFS(err))
	}
	defer tree.Close()
	x := &extractor{ctx: ctx, root: tree, lim: lim, dirs: map[string]dirMeta{}}
	err = x.run(f, kind, gzName)
	if err == nil {
		err = x.checkLinks()
	}
	if err == nil && beforeCommit != nil {
		err = beforeCommit()
	}
	if err == nil {
		err = x.commit(root, stg.rel)
	}
	if err != nil {
		return extractStats{}, err
	}
	return extractStats{entries: x.entries, bytes: x.bytes}, nil
}

func (x *extractor) run(f *os.File, kind archiveKind, gzName string) error {
	br := func() *bufio.Reader { return bufio.NewReaderSize(io.NewSectionReader(f, 0, 1<<62), 1<<20) }
	switch kind {
	case kindTar:
		return x.tar(br())
	case kindTarGz:
		zr, err := gzip.NewReader(br())
		if err != nil {
			return fmt.Errorf("not a gzip stream: %v: %w", err, errdefs.ErrInvalid)
		}
		return x.tar(zr)
	case kindTarBz2:
		return x.tar(bzip2.NewReader(br()))
	case kindTarXz:
		xr, err := newXZReader(br())
		if errors.Is(err, errLimit) {
			return err
		}
		if err != nil {
			return fmt.Errorf("not an xz stream: %v: %w", err, errdefs.ErrInvalid)
		}
		return x.tar(xr)
	case kindZip:
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		return x.zip(f, fi.Size())
	case kindGz:
		zr, err := gzip.NewReader(br())
		if err != nil {
			return fmt.Errorf("not a gzip stream: %v: %w", err, errdefs.ErrInvalid)
		}
		if err := x.count(); err != nil {
			return err
		}
		name, err := x.cleanName(gzName)
		if err != nil {
			return err
		}
		if name == "" {
			return fmt.Errorf("no file name to decompress %q to: %w", gzName, errdefs.ErrInvalid)
		}
		return x.writeFile(name, 0o644, time.Now(), zr)
	}
	return fmt.Errorf("unknown archive kind %v", kind)
}

func (x *extractor) count() error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	x.entries++
	if x.entries+x.madeDirs > x.lim.maxEntries {
		return fmt.Errorf("archive has more than %d entries (files and directories): %w: %w", x.lim.maxEntries, errLimit, errdefs.ErrInvalid)
	}
	return nil
}

// cleanName turns an archive entry name into a path relative to the root,
// or "" for the root itself. Absolute names and any `..` element are
// refused rather than rewritten: an archive that tries is hostile.
func (x *extractor) cleanName(raw string) (string, error) {
	if strings.ContainsRune(raw, 0) {
		return "", fmt.Errorf("entry %q: NUL in name: %w", raw, errdefs.ErrInvalid)
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("entry %q: absolute path: %w", raw, errdefs.ErrForbidden)
	}
	for _, part := range strings.Split(raw, "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q: path escapes the sandbox: %w", raw, errdefs.ErrForbidden)
		}
	}
	n := path.Clean(raw)
	if n == "." {
		return "", nil
	}
	if !filepath.IsLocal(n) {
		return "", fmt.Errorf("entry %q: not a local path: %w", raw, errdefs.ErrForbidden)
	}
	return n, nil
}

func (x *extractor) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if errors.Is(err, errLimit) {
			return err
		}
		if err != nil {
			return fmt.Errorf("corrupt tar archive: %v: %w", err, errdefs.ErrInvalid)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := x.count(); err != nil {
			return err
		}
		name, err := x.cleanName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse:
			err = x.writeFile(name, mode, hdr.ModTime, tr)
		case tar.TypeDir:
			err = x.mkdir(name, mode, hdr.ModTime)
		case tar.TypeSymlink:
			err = x.symlink(name, hdr.Linkname)
		case tar.TypeLink:
			err = x.hardlink(name, hdr.Linkname)
		case tar.TypeChar, tar.TypeBlock:
			err = fmt.Errorf("entry %q: device files are not extracted: %w", hdr.Name, errdefs.ErrForbidden)
		case tar.TypeFifo:
			err = fmt.Errorf("entry %q: FIFOs are not extracted: %w", hdr.Name, errdefs.ErrForbidden)
		default:
			err = fmt.Errorf("entry %q: unsupported tar entry type %q: %w", hdr.Name, hdr.Typeflag, errdefs.ErrInvalid)
		}
		if err != nil {
			return err
		}
	}
}

func (x *extractor) zip(f *os.File, size int64) error {
	zr, err := zip.NewReader(f, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("corrupt zip archive: %v: %w", err, errdefs.ErrInvalid)
	}
	if len(zr.File) > x.lim.maxEntries {
		return fmt.Errorf("archive has %d entries, over the limit of %d: %w: %w", len(zr.File), x.lim.maxEntries, errLimit, errdefs.ErrInvalid)
	}
	for _, zf := range zr.File {
		if err := x.count(); err != nil {
			return err
		}
		name, err := x.cleanName(zf.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		mode := zf.Mode()
		switch {
		case mode&fs.ModeSymlink != 0:
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("entry %q: %v: %w", zf.Name, err, errdefs.ErrInvalid)
			}
			target, err := io.ReadAll(io.LimitReader(rc, 4097))
			rc.Close()
			if err != nil || len(target) > 4096 {
				return fmt.Errorf("entry %q: bad symlink target: %w", zf.Name, errdefs.ErrInvalid)
			}
			err = x.symlink(name, string(target))
			if err != nil {
				return err
			}
		case mode.IsDir() || strings.HasSuffix(zf.Name, "/"):
			if err := x.mkdir(name, mode, zf.Modified); err != nil {
				return err
			}
		case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeIrregular) != 0:
			return fmt.Errorf("entry %q: special files are not extracted: %w", zf.Name, errdefs.ErrForbidden)
		default:
			if mode.Perm() == 0 {
				// Archives made on systems without Unix modes.
				mode = 0o644
			}
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("entry %q: %v: %w", zf.Name, err, errdefs.ErrInvalid)
			}
			err = x.writeFile(name, mode, zf.Modified, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// mkdirAll creates dir and its parents inside the root. A parent that is a
// symlink is accepted only when it resolves, inside the root, to a
// directory; the root itself refuses one that leads out.
func (x *extractor) mkdirAll(dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	parts := strings.Split(dir, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := x.root.Lstat(p)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil && fi.Mode()&fs.ModeSymlink != 0:
			st, err := x.root.Stat(p)
			if err != nil || !st.IsDir() {
				return fmt.Errorf("%q is a symlink that does not lead to a directory inside the sandbox: %w", p, errdefs.ErrForbidden)
			}
		case err == nil:
			return fmt.Errorf("%q exists and is not a directory: %w", p, errdefs.ErrConflict)
		case errors.Is(err, fs.ErrNotExist):
			// Directories made for a deep name count as entries: one
			// entry named a/b/c/... must not make thousands for free.
			if i < len(parts)-1 || !x.counted(p) {
				x.madeDirs++
				if x.entries+x.madeDirs > x.lim.maxEntries {
					return fmt.Errorf("archive makes more than %d files and directories: %w: %w", x.lim.maxEntries, errLimit, errdefs.ErrInvalid)
				}
			}
			if err := x.root.Mkdir(p, 0o755); err != nil {
				return fmt.Errorf("mkdir %q: %w", p, classifyFS(err))
			}
		default:
			return fmt.Errorf("%q: %w", p, classifyFS(err))
		}
	}
	return nil
}

// counted reports whether the last element of a mkdirAll is the archive
// entry being extracted, which count has already charged.
func (x *extractor) counted(p string) bool { return p == x.current }

func (x *extractor) mkdir(name string, mode fs.FileMode, mtime time.Time) error {
	x.current = name
	defer func() { x.current = "" }()
	if err := x.mkdirAll(name); err != nil {
		return err
	}
	x.dirs[name] = dirMeta{mode: mode.Perm(), mtime: mtime}
	return nil
}

// removeExisting unlinks a file or symlink already at name, as tar does.
// Unlinking (instead of truncating) matters: the old name may be a symlink
// or a hard link shared with the cache or another file.
func (x *extractor) removeExisting(name string) error {
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%q: %w", name, classifyFS(err))
	}
	if fi.IsDir() {
		return fmt.Errorf("%q exists as a directory: %w", name, errdefs.ErrConflict)
	}
	return x.root.Remove(name)
}

func (x *extractor) writeFile(name string, mode fs.FileMode, mtime time.Time, r io.Reader) error {
	if err := x.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := x.removeExisting(name); err != nil {
		return err
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create %q: %w", name, classifyFS(err))
	}
	remaining := x.lim.maxBytes - x.bytes
	n, err := io.Copy(f, io.LimitReader(ctxReader{ctx: x.ctx, r: r}, remaining+1))
	x.bytes += n
	if err == nil && n > remaining {
		what := fmt.Sprintf("archive decompresses to more than %d bytes", x.lim.maxBytes)
		if x.lim.over != nil {
			err = fmt.Errorf("%w: %w", errLimit, x.lim.over(what))
		} else {
			err = fmt.Errorf("%s (the fetcher's extraction limit): %w: %w", what, errLimit, errdefs.ErrInvalid)
		}
	} else if errors.Is(err, errLimit) {
		err = fmt.Errorf("extract %q: %w", name, err)
	} else if err != nil {
		err = fmt.Errorf("extract %q: %v: %w", name, scrubPath(err), errdefs.ErrInvalid)
	}
	if err == nil {
		// Permission bits only: setuid, setgid and sticky are dropped.
		err = f.Chmod(mode.Perm())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !mtime.IsZero() {
		_ = x.root.Chtimes(name, mtime, mtime)
	}
	return nil
}

func (x *extractor) symlink(name, target string) error {
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("symlink %q: empty or invalid target: %w", name, errdefs.ErrInvalid)
	}
	if path.IsAbs(target) || !filepath.IsLocal(path.Join(path.Dir(name), target)) {
		return fmt.Errorf("symlink %q -> %q points outside the sandbox: %w", name, target, errdefs.ErrForbidden)
	}
	if err := x.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := x.removeExisting(name); err != nil {
		return err
	}
	if err := x.root.Symlink(target, name); err != nil {
		return fmt.Errorf("symlink %q: %w", name, classifyFS(err))
	}
	x.links = append(x.links, name)
	return nil
}

func (x *extractor) hardlink(name, target string) error {
	t, err := x.cleanName(target)
	if err != nil {
		return fmt.Errorf("hard link %q: %w", name, err)
	}
	if t == "" {
		return fmt.Errorf("hard link %q: empty target: %w", name, errdefs.ErrInvalid)
	}
	if t == name {
		return nil
	}
	fi, err := x.root.Lstat(t)
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("hard link %q -> %q: target is not a file extracted from this archive: %w", name, target, errdefs.ErrForbidden)
	}
	if err := x.mkdirAll(path.Dir(name)); err != nil {
		return err
	}
	if err := x.removeExisting(name); err != nil {
		return err
	}
	if err := x.root.Link(t, name); err != nil {
		return fmt.Errorf("hard link %q: %w", name, classifyFS(err))
	}
	return nil
}

// checkLinks checks every symlink once the tree is complete: a chain of
// individually harmless links can still lead out.
func (x *extractor) checkLinks() error {
	for _, l := range x.links {
		if _, err := x.root.Stat(l); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("symlink %q resolves outside the sandbox: %w", l, errdefs.ErrForbidden)
		}
	}
	return nil
}

// commit moves the extracted tree from the staging directory stage into
// sb, merging it with what the sandbox holds as extracting in place did: a
// name the sandbox lacks is renamed in whole, a file or symlink replaces
// the file or symlink of the same name (rename never writes through
// either), and a directory merges into the sandbox's directory (or a
// symlink to one inside the sandbox). All conflicts are found before the
// first rename, so a refused archive moves nothing. Directory modes and
// times are applied last, at their final places: a directory read-only in
// the archive must not stop the moves into it.
func (x *extractor) commit(sb *os.Root, stage string) error {
	var moves []string
	if err := x.planMoves(sb, ".", &moves); err != nil {
		return err
	}
	for _, m := range moves {
		if err := sb.Rename(path.Join(stage, m), m); err != nil {
			return fmt.Errorf("move %q into the sandbox: %w", m, classifyFS(err))
		}
	}
	dirs := make([]string, 0, len(x.dirs))
	for d := range x.dirs {
		dirs = append(dirs, d)
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	for _, d := range dirs {
		m := x.dirs[d]
		if err := sb.Chmod(d, m.mode); err != nil {
			return fmt.Errorf("chmod %q: %w", d, classifyFS(err))
		}
		if !m.mtime.IsZero() {
			_ = sb.Chtimes(d, m.mtime, m.mtime)
		}
	}
	return nil
}

// planMoves lists the renames that put the staged directory dir (relative
// to the tree) into sb, or says why they cannot.
func (x *extractor) planMoves(sb *os.Root, dir string, moves *[]string) error {
	d, err := x.root.Open(dir)
	if err != nil {
		return fmt.Errorf("read the staged %q: %w", dir, classifyFS(err))
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("read the staged %q: %w", dir, classifyFS(err))
	}
	sort.Strings(names)
	for _, n := range names {
		rel := path.Join(dir, n)
		src, err := x.root.Lstat(rel)
		if err != nil {
			return fmt.Errorf("%q: %w", rel, classifyFS(err))
		}
		dst, err := sb.Lstat(rel)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			*moves = append(*moves, rel)
		case err != nil:
			return fmt.Errorf("%q: %w", rel, classifyFS(err))
		case src.IsDir():
			if !dst.IsDir() {
				if dst.Mode()&fs.ModeSymlink == 0 {
					return fmt.Errorf("%q exists and is not a directory: %w", rel, errdefs.ErrConflict)
				}
				if st, err := sb.Stat(rel); err != nil || !st.IsDir() {
					return fmt.Errorf("%q is a symlink that does not lead to a directory inside the sandbox: %w", rel, errdefs.ErrForbidden)
				}
			}
			if err := x.planMoves(sb, rel, moves); err != nil {
				return err
			}
		case dst.IsDir():
			return fmt.Errorf("%q exists as a directory: %w", rel, errdefs.ErrConflict)
		default:
			*moves = append(*moves, rel)
		}
	}
	return nil
}

// classifyFS maps a filesystem error met while resolving through an
// os.Root: not-exist stays not-found, anything else on a path we built
// ourselves means the root refused to leave the sandbox.
func classifyFS(err error) error {
	err = scrubPath(err)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("%v: %w", err, errdefs.ErrConflict)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%v: %w", err, errdefs.ErrUnavailable)
	default:
		return fmt.Errorf("%v: %w", err, errdefs.ErrForbidden)
	}
}

// scrubPath drops an absolute path from a filesystem error: such messages
// reach the task's status, and the host's layout is not the task's
// business. Paths relative to the sandbox are kept.
func scrubPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && filepath.IsAbs(pe.Path) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	var le *os.LinkError
	if errors.As(err, &le) && (filepath.IsAbs(le.Old) || filepath.IsAbs(le.New)) {
		return fmt.Errorf("%s: %w", le.Op, le.Err)
	}
	return err
}
