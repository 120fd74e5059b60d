package docker

import (
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// statistics maps one dockerd stats sample onto Mesos's ResourceStatistics.
// dockerd reports cgroup v1 memory counters as rss/cache and v2 ones as
// anon/file; both are read.
func statistics(s container.StatsResponse, ins container.InspectResponse) *mesos.ResourceStatistics {
	ts := s.Read
	if ts.IsZero() {
		ts = time.Now()
	}
	st := &mesos.ResourceStatistics{
		Timestamp:          proto.Float64(float64(ts.UnixNano()) / 1e9),
		CpusUserTimeSecs:   proto.Float64(float64(s.CPUStats.CPUUsage.UsageInUsermode) / 1e9),
		CpusSystemTimeSecs: proto.Float64(float64(s.CPUStats.CPUUsage.UsageInKernelmode) / 1e9),
		MemTotalBytes:      proto.Uint64(s.MemoryStats.Usage),
	}
	if s.PidsStats.Current > 0 {
		st.Processes = proto.Uint32(uint32(s.PidsStats.Current))
	}
	if td := s.CPUStats.ThrottlingData; td.Periods > 0 {
		st.CpusNrPeriods = proto.Uint32(uint32(td.Periods))
		st.CpusNrThrottled = proto.Uint32(uint32(td.ThrottledPeriods))
		st.CpusThrottledTimeSecs = proto.Float64(float64(td.ThrottledTime) / 1e9)
	}
	if s.MemoryStats.Limit > 0 {
		st.MemLimitBytes = proto.Uint64(s.MemoryStats.Limit)
	}
	stat := s.MemoryStats.Stats
	first := func(keys ...string) (uint64, bool) {
		for _, k := range keys {
			if v, ok := stat[k]; ok {
				return v, true
			}
		}
		return 0, false
	}
	if v, ok := first("total_rss", "rss", "anon"); ok {
		st.MemRssBytes = proto.Uint64(v)
		st.MemAnonBytes = proto.Uint64(v)
	}
	if v, ok := first("total_cache", "cache", "file"); ok {
		st.MemCacheBytes = proto.Uint64(v)
		st.MemFileBytes = proto.Uint64(v)
	}
	if v, ok := first("total_mapped_file", "mapped_file", "file_mapped"); ok {
		st.MemMappedFileBytes = proto.Uint64(v)
	}
	if v, ok := first("total_swap", "swap"); ok {
		st.MemSwapBytes = proto.Uint64(v)
	}
	if v, ok := first("total_unevictable", "unevictable"); ok {
		st.MemUnevictableBytes = proto.Uint64(v)
	}
	if hc := ins.HostConfig; hc != nil {
		switch {
		case hc.NanoCPUs > 0:
			st.CpusLimit = proto.Float64(float64(hc.NanoCPUs) / 1e9)
		case hc.CPUQuota > 0 && hc.CPUPeriod > 0:
			st.CpusLimit = proto.Float64(float64(hc.CPUQuota) / float64(hc.CPUPeriod))
		case hc.CPUShares > 0:
			st.CpusLimit = proto.Float64(float64(hc.CPUShares) / cpuSharesPerCPU)
		}
		if hc.CPUShares > 0 {
			st.CpusSoftLimit = proto.Float64(float64(hc.CPUShares) / cpuSharesPerCPU)
		}
		if hc.MemoryReservation > 0 {
			st.MemSoftLimitBytes = proto.Uint64(uint64(hc.MemoryReservation))
		}
	}
	if len(s.Networks) > 0 {
		var rxp, rxb, rxe, rxd, txp, txb, txe, txd uint64
		for _, n := range s.Networks {
			rxp += n.RxPackets
			rxb += n.RxBytes
			rxe += n.RxErrors
			rxd += n.RxDropped
			txp += n.TxPackets
			txb += n.TxBytes
			txe += n.TxErrors
			txd += n.TxDropped
		}
		st.NetRxPackets, st.NetRxBytes, st.NetRxErrors, st.NetRxDropped = proto.Uint64(rxp), proto.Uint64(rxb), proto.Uint64(rxe), proto.Uint64(rxd)
		st.NetTxPackets, st.NetTxBytes, st.NetTxErrors, st.NetTxDropped = proto.Uint64(txp), proto.Uint64(txb), proto.Uint64(txe), proto.Uint64(txd)
	}
	return st
}
