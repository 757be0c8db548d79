package wire

import "time"

// Node is a node as GET /nodes lists it (E2B's Node).
type Node struct {
	ID                   string      `json:"id"`
	ServiceInstanceID    string      `json:"serviceInstanceID"`
	ClusterID            string      `json:"clusterID"`
	Status               string      `json:"status"`
	StatusChangedAt      time.Time   `json:"statusChangedAt"`
	SandboxCount         int64       `json:"sandboxCount"`
	Metrics              NodeMetrics `json:"metrics"`
	CreateSuccesses      int64       `json:"createSuccesses"`
	CreateFails          int64       `json:"createFails"`
	SandboxStartingCount int64       `json:"sandboxStartingCount"`
	Version              string      `json:"version"`
	Commit               string      `json:"commit"`
	MachineInfo          MachineInfo `json:"machineInfo"`
}

// NodeDetail is the body of GET /nodes/{nodeID} (E2B's NodeDetail): a
// Node less its starting count.
type NodeDetail struct {
	ID                string      `json:"id"`
	ServiceInstanceID string      `json:"serviceInstanceID"`
	ClusterID         string      `json:"clusterID"`
	Status            string      `json:"status"`
	StatusChangedAt   time.Time   `json:"statusChangedAt"`
	SandboxCount      int64       `json:"sandboxCount"`
	Metrics           NodeMetrics `json:"metrics"`
	CreateSuccesses   int64       `json:"createSuccesses"`
	CreateFails       int64       `json:"createFails"`
	Version           string      `json:"version"`
	Commit            string      `json:"commit"`
	MachineInfo       MachineInfo `json:"machineInfo"`
}

// NodeMetrics is a node's capacity and load.
type NodeMetrics struct {
	AllocatedCPU         int64         `json:"allocatedCPU"`
	AllocatedMemoryBytes int64         `json:"allocatedMemoryBytes"`
	CPUPercent           int64         `json:"cpuPercent"`
	MemoryUsedBytes      int64         `json:"memoryUsedBytes"`
	CPUCount             int64         `json:"cpuCount"`
	MemoryTotalBytes     int64         `json:"memoryTotalBytes"`
	Disks                []DiskMetrics `json:"disks"`
	HugePagesTotal       int64         `json:"hugePagesTotal"`
	HugePagesUsed        int64         `json:"hugePagesUsed"`
	HugePagesReserved    int64         `json:"hugePagesReserved"`
	HugePageSizeBytes    int64         `json:"hugePageSizeBytes"`
}

// DiskMetrics is one filesystem of a node.
type DiskMetrics struct {
	MountPoint     string `json:"mountPoint"`
	Device         string `json:"device"`
	FilesystemType string `json:"filesystemType"`
	UsedBytes      int64  `json:"usedBytes"`
	TotalBytes     int64  `json:"totalBytes"`
}

// MachineInfo is a node's CPU.
type MachineInfo struct {
	CPUFamily       string `json:"cpuFamily"`
	CPUModel        string `json:"cpuModel"`
	CPUModelName    string `json:"cpuModelName"`
	CPUArchitecture string `json:"cpuArchitecture"`
}
