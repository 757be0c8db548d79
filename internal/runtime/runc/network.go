package runc

// HostNetworkStack reports that runc boxes use the host kernel's network
// stack in their network namespaces, so sbx can reach a box's loopback by
// entering its namespace (see sandbox.PortDialer).
func (r *Runtime) HostNetworkStack() bool { return true }
