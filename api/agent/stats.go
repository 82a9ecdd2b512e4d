package agent

// OOMKillStat is the key under which StatsContainer's MemoryStats.Stats
// carries the container's OOM kill count (memory.events' oom_kill on
// cgroup v2, memory.oom_control's on v1), beside memory.stat's keys,
// which have no such count. Kata's agent does not send it; the vc shim
// turns it into the OOM kill count of containerd's metrics.
const OOMKillStat = "oom_kill"
