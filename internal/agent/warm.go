package agent

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	fspb "github.com/sbxdev/sbx/gen/filesystem"
	processpb "github.com/sbxdev/sbx/gen/process"
)

// warmMessages builds the protobuf runtime's tables for every message the
// agent's services receive and send. The runtime otherwise builds each
// message's table on its first use, and in a sandbox of the warm pool that
// first use is the first command of the create that took it: the work
// belongs to the agent's start, done while the sandbox waits in the pool.
func warmMessages() {
	for _, fd := range []protoreflect.FileDescriptor{processpb.File_process_process_proto, fspb.File_filesystem_filesystem_proto} {
		warmAll(fd.Messages())
	}
}

func warmAll(mds protoreflect.MessageDescriptors) {
	for i := range mds.Len() {
		md := mds.Get(i)
		if mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName()); err == nil {
			m := mt.New().Interface()
			if b, err := proto.Marshal(m); err == nil {
				_ = proto.Unmarshal(b, m)
			}
			_ = proto.Size(m)
		}
		warmAll(md.Messages())
	}
}
