package agent

// SandboxNamespace, as the path of a container's IPC or UTS namespace in
// the spec of CreateContainerRequest, asks the agent for the sandbox's
// shared namespace of that type. The containers of a pod share their IPC
// and UTS namespaces, as runc's share the pause container's: the host names
// the pause container's namespaces by host paths, which mean nothing in
// the guest, and sends this instead. The agent makes each shared namespace
// on first use and drops it with DestroySandbox. It is not a Kata
// convention: Kata's agent puts every container in the sandbox's IPC and
// UTS namespaces whatever the spec says.
const SandboxNamespace = "vc:sandbox"
