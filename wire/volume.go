package wire

import "time"

// NewVolume is the body of POST /volumes (E2B's NewVolume).
type NewVolume struct {
	// Name is unique among the server's volumes: ^[a-zA-Z0-9_-]+$.
	Name string `json:"name"`
	// SizeMB is an sbx extension: the volume's quota in MiB; absent means
	// the server's default.
	SizeMB *int64 `json:"sizeMB,omitempty"`
}

// Volume is one volume of GET /volumes (E2B's Volume).
type Volume struct {
	VolumeID string `json:"volumeID"`
	Name     string `json:"name"`
	// SizeMB is an sbx extension: the volume's quota in MiB.
	SizeMB int64 `json:"sizeMB,omitempty"`
}

// VolumeAndToken is a volume as POST /volumes and GET /volumes/{id}
// answer it (E2B's VolumeAndToken): with the token that authorises the
// volume-content routes (/volumecontent/{id}/...) as a Bearer token.
type VolumeAndToken struct {
	VolumeID string `json:"volumeID"`
	Name     string `json:"name"`
	Token    string `json:"token"`
	// SizeMB is an sbx extension: the volume's quota in MiB.
	SizeMB int64 `json:"sizeMB,omitempty"`
}

// SandboxVolumeMount is one entry of a create request's volumeMounts and
// of a sandbox's details (E2B's SandboxVolumeMount): the volume's name and
// the absolute path it is mounted at in the sandbox.
type SandboxVolumeMount struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// VolumeEntryStat is a file or directory in a volume, as the
// volume-content routes answer it (E2B's VolumeEntryStat). Uid and Gid
// are the ids as sandboxes see them.
type VolumeEntryStat struct {
	Name string `json:"name"`
	// Type is "file", "directory", "symlink" or "unknown".
	Type string `json:"type"`
	// Path is the absolute path within the volume.
	Path  string    `json:"path"`
	Size  int64     `json:"size"`
	Mode  uint32    `json:"mode"`
	UID   uint32    `json:"uid"`
	GID   uint32    `json:"gid"`
	Atime time.Time `json:"atime"`
	Mtime time.Time `json:"mtime"`
	Ctime time.Time `json:"ctime"`
	// Target is a symlink's target, as stored.
	Target string `json:"target,omitempty"`
}

// VolumeMetadata is the body of PATCH /volumecontent/{id}/path: the owner
// and mode to set; an absent field is kept.
type VolumeMetadata struct {
	UID  *uint32 `json:"uid,omitempty"`
	GID  *uint32 `json:"gid,omitempty"`
	Mode *uint32 `json:"mode,omitempty"`
}
