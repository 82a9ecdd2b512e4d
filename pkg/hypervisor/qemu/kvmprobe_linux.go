package qemu

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The KVM probe answers one question cheaply: does this host's /dev/kvm run
// an ordinary x86 guest at hardware speed? A nested PVM host (kvm_pvm)
// opens /dev/kvm, creates VMs, runs real-mode firmware and even enters long
// mode, but traps every store into a large page that holds page tables, as
// a stock kernel's decompressor does all the time: the kernel crawls, then
// dies with "KVM internal error ... emulation failure". Asking whether
// /dev/kvm exists is not enough, and booting a kernel to find out costs
// seconds. The probe runs a throwaway VM through the KVM ioctls, no QEMU,
// no kernel image: real mode -> long mode with an identity-mapped 2 MiB
// page, then 100,000 store+load pairs in the page that holds the page
// tables, timed from the host between two port writes. Hardware KVM runs
// the loop in well under a millisecond; the PVM host here takes about
// 100 ms (each store traps).

const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetTSSAddr          = 0xAE47
	kvmRun                 = 0xAE80
	kvmGetSupportedCPUID   = 3<<30 | 8<<16 | 0xAE<<8 | 0x05
	kvmSetCPUID2           = 1<<30 | 8<<16 | 0xAE<<8 | 0x90
	kvmSetUserMemoryRegion = 1<<30 | 32<<16 | 0xAE<<8 | 0x46
	kvmSetRegs             = 1<<30 | 144<<16 | 0xAE<<8 | 0x82
	kvmGetSregs            = 2<<30 | 312<<16 | 0xAE<<8 | 0x83
	kvmSetSregs            = 1<<30 | 312<<16 | 0xAE<<8 | 0x84

	kvmExitIO            = 2
	kvmExitHLT           = 5
	kvmExitShutdown      = 8
	kvmExitFailEntry     = 9
	kvmExitInternalError = 17

	probeMemSize = 2 << 20
	probeCode    = 0x1000
	probeGDT     = 0x500
	probeGDTR    = 0x520
	probePML4    = 0x2000
	probePort    = 0x10
	probeInLong  = 0x42 // written once in 64-bit mode
	probeLooped  = 0x43 // written after the store loop

	// probeLoopBudget is the most the store loop may take for KVM to
	// count as usable: ~100x what hardware KVM needs even on a loaded
	// host, ~1/5 of what the PVM host takes.
	probeLoopBudget = 20 * time.Millisecond
)

// probeProgram, loaded at 0x1000 and entered in real mode (GNU as, then
// ld -Ttext=0x1000 --oformat binary):
//
//	.code16
//	  cli
//	  lgdtl 0x520                     # GDT: null, 64-bit code 0x08, data 0x10
//	  mov $0x2000, %eax; mov %eax, %cr3                     # PML4
//	  mov %cr4, %eax; or $0x20, %eax; mov %eax, %cr4         # PAE
//	  mov $0xC0000080, %ecx; rdmsr; or $0x100, %eax; wrmsr   # EFER.LME
//	  mov %cr0, %eax; or $0x80000001, %eax; mov %eax, %cr0   # PG|PE
//	  ljmpl $0x08, $long64
//	.code64
//	long64:
//	  mov $0x10, %eax; mov %eax, %ds; mov %eax, %ss
//	  movabs $0x4200000000, %rax; shr $32, %rax   # only 64-bit code gets 0x42
//	  out %al, $0x10
//	  mov $100000, %rcx
//	1: mov %rcx, 0x6000; add 0x6000, %rax; dec %rcx; jnz 1b
//	  mov $0x43, %al; out %al, $0x10
//	  hlt
var probeProgram = []byte{
	0xfa, 0x66, 0x0f, 0x01, 0x16, 0x20, 0x05, 0x66, 0xb8, 0x00, 0x20, 0x00,
	0x00, 0x0f, 0x22, 0xd8, 0x0f, 0x20, 0xe0, 0x66, 0x83, 0xc8, 0x20, 0x0f,
	0x22, 0xe0, 0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x66, 0x0d,
	0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x66, 0x0d, 0x01,
	0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0x3e, 0x10, 0x00, 0x00,
	0x08, 0x00, 0xb8, 0x10, 0x00, 0x00, 0x00, 0x8e, 0xd8, 0x8e, 0xd0, 0x48,
	0xb8, 0x00, 0x00, 0x00, 0x00, 0x42, 0x00, 0x00, 0x00, 0x48, 0xc1, 0xe8,
	0x20, 0xe6, 0x10, 0x48, 0xc7, 0xc1, 0xa0, 0x86, 0x01, 0x00, 0x48, 0x89,
	0x0c, 0x25, 0x00, 0x60, 0x00, 0x00, 0x48, 0x03, 0x04, 0x25, 0x00, 0x60,
	0x00, 0x00, 0x48, 0xff, 0xc9, 0x75, 0xeb, 0xb0, 0x43, 0xe6, 0x10, 0xf4,
}

type kvmUserspaceMemoryRegion struct {
	Slot, Flags                              uint32
	GuestPhysAddr, MemorySize, UserspaceAddr uint64
}

type kvmSegment struct {
	Base                                              uint64
	Limit                                             uint32
	Selector                                          uint16
	Type, Present, DPL, DB, S, L, G, AVL, Unusable, _ uint8
}

type kvmDtable struct {
	Base  uint64
	Limit uint16
	_     [3]uint16
}

type kvmSregs struct {
	CS, DS, ES, FS, GS, SS, TR, LDT     kvmSegment
	GDT, IDT                            kvmDtable
	CR0, CR2, CR3, CR4, CR8, EFER, APIC uint64
	InterruptBitmap                     [4]uint64
}

type kvmRegs struct {
	RAX, RBX, RCX, RDX, RSI, RDI, RSP, RBP uint64
	R8, R9, R10, R11, R12, R13, R14, R15   uint64
	RIP, RFLAGS                            uint64
}

type kvmCPUIDEntry2 struct {
	Function, Index, Flags, EAX, EBX, ECX, EDX uint32
	_                                          [3]uint32
}

const maxCPUIDEntries = 256

type kvmCPUID2 struct {
	Nent    uint32
	_       uint32
	Entries [maxCPUIDEntries]kvmCPUIDEntry2
}

func ioctl(fd int, req uintptr, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// errKVMUnusable is wrapped by the probe failures that say KVM cannot run
// a guest (as opposed to the probe being unable to ask).
var errKVMUnusable = errors.New("kvm cannot run a stock guest")

// errProbeHung is wrapped (with errKVMUnusable) when the probe guest did not
// finish in time: no point trying again.
var errProbeHung = errors.New("the probe guest did not finish")

// probeKVM runs the probe program in a fresh VM on dev and returns how long
// its store loop took. It fails, wrapping errKVMUnusable, when the guest
// did not get through, or took longer than timeout overall.
func probeKVM(dev string, timeout time.Duration) (time.Duration, error) {
	type result struct {
		loop time.Duration
		err  error
	}
	done := make(chan result, 1)
	var tid atomic.Int32
	var abandoned atomic.Bool
	go func() {
		// A vCPU belongs to the thread that created it.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid.Store(int32(unix.Gettid()))
		loop, err := runProbe(dev, &abandoned)
		done <- result{loop, err}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.loop, r.err
	case <-timer.C:
	}
	// Kick the vCPU out of KVM_RUN: a signal makes it return EINTR, and
	// the loop then sees abandoned. Go tolerates a stray SIGURG (it uses
	// it for preemption).
	abandoned.Store(true)
	for {
		if t := tid.Load(); t != 0 {
			_ = unix.Tgkill(unix.Getpid(), int(t), unix.SIGURG)
		}
		select {
		case <-done:
			return 0, fmt.Errorf("%w: %w within %s", errKVMUnusable, errProbeHung, timeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func runProbe(dev string, abandoned *atomic.Bool) (time.Duration, error) {
	fail := func(what string, err error) (time.Duration, error) {
		return 0, fmt.Errorf("%w: %s: %v", errKVMUnusable, what, err)
	}
	kvm, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open %s: %w", dev, err)
	}
	defer unix.Close(kvm)
	if v, err := ioctl(kvm, kvmGetAPIVersion, 0); err != nil || v != 12 {
		return fail("KVM_GET_API_VERSION", fmt.Errorf("version %d, %v", v, err))
	}
	vmfd, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return fail("KVM_CREATE_VM", err)
	}
	vm := int(vmfd)
	defer unix.Close(vm)
	// Intel without unrestricted guest needs a TSS for real mode; harmless
	// elsewhere, and not every KVM flavour implements it.
	_, _ = ioctl(vm, kvmSetTSSAddr, 0xfffbd000)

	mem, err := unix.Mmap(-1, 0, probeMemSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return 0, fmt.Errorf("mmap probe guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	layoutProbeMemory(mem)
	region := kvmUserspaceMemoryRegion{
		MemorySize:    probeMemSize,
		UserspaceAddr: uint64(uintptr(unsafe.Pointer(&mem[0]))),
	}
	if _, err := ioctl(vm, kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return fail("KVM_SET_USER_MEMORY_REGION", err)
	}
	cpufd, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return fail("KVM_CREATE_VCPU", err)
	}
	cpu := int(cpufd)
	defer unix.Close(cpu)

	// Long mode needs the guest's CPUID to advertise it.
	cpuid := new(kvmCPUID2)
	cpuid.Nent = maxCPUIDEntries
	if _, err := ioctl(kvm, kvmGetSupportedCPUID, uintptr(unsafe.Pointer(cpuid))); err != nil {
		return fail("KVM_GET_SUPPORTED_CPUID", err)
	}
	if _, err := ioctl(cpu, kvmSetCPUID2, uintptr(unsafe.Pointer(cpuid))); err != nil {
		return fail("KVM_SET_CPUID2", err)
	}
	size, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return fail("KVM_GET_VCPU_MMAP_SIZE", err)
	}
	run, err := unix.Mmap(cpu, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap kvm_run", err)
	}
	defer unix.Munmap(run)

	var sregs kvmSregs
	if _, err := ioctl(cpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs))); err != nil {
		return fail("KVM_GET_SREGS", err)
	}
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	sregs.DS.Base, sregs.DS.Selector = 0, 0
	sregs.SS.Base, sregs.SS.Selector = 0, 0
	if _, err := ioctl(cpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs))); err != nil {
		return fail("KVM_SET_SREGS", err)
	}
	regs := kvmRegs{RIP: probeCode, RFLAGS: 2, RSP: 0x7000}
	if _, err := ioctl(cpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs))); err != nil {
		return fail("KVM_SET_REGS", err)
	}

	// struct kvm_run: exit_reason u32 at 8; the exit's union at 32. For
	// I/O: direction u8, size u8, port u16, count u32, data_offset u64.
	le := binary.LittleEndian
	var inLong time.Time
	var loop time.Duration
	for exits := 0; exits < 64; exits++ {
		if abandoned.Load() {
			return 0, fmt.Errorf("%w: abandoned", errKVMUnusable)
		}
		if _, err := ioctl(cpu, kvmRun, 0); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fail("KVM_RUN", err)
		}
		now := time.Now()
		switch reason := le.Uint32(run[8:]); reason {
		case kvmExitIO:
			port, off := le.Uint16(run[34:]), le.Uint64(run[40:])
			if port != probePort || off >= uint64(len(run)) {
				return fail("probe guest", fmt.Errorf("unexpected I/O on port %#x", port))
			}
			switch v := run[off]; {
			case v == probeInLong && inLong.IsZero():
				inLong = now
			case v == probeLooped && !inLong.IsZero():
				loop = now.Sub(inLong)
			default:
				return fail("probe guest", fmt.Errorf("reported %#x out of turn", v))
			}
		case kvmExitHLT:
			if loop == 0 {
				return fail("probe guest", errors.New("halted before its store loop was done"))
			}
			return loop, nil
		case kvmExitInternalError:
			return fail("probe guest", fmt.Errorf("KVM internal error, suberror %d (1 is emulation failure)", le.Uint32(run[32:])))
		case kvmExitShutdown:
			return fail("probe guest", errors.New("triple fault"))
		case kvmExitFailEntry:
			return fail("probe guest", fmt.Errorf("VM entry failed, reason %#x", le.Uint64(run[32:])))
		default:
			return fail("probe guest", fmt.Errorf("unexpected exit reason %d", reason))
		}
	}
	return fail("probe guest", errors.New("did not halt"))
}

// layoutProbeMemory writes the program, a flat GDT and page tables that
// identity-map the first 2 MiB with one large page.
func layoutProbeMemory(mem []byte) {
	copy(mem[probeCode:], probeProgram)
	le := binary.LittleEndian
	le.PutUint64(mem[probeGDT:], 0)
	le.PutUint64(mem[probeGDT+8:], 0x00af9a000000ffff)  // 64-bit code
	le.PutUint64(mem[probeGDT+16:], 0x00cf92000000ffff) // data
	le.PutUint16(mem[probeGDTR:], 3*8-1)
	le.PutUint32(mem[probeGDTR+2:], probeGDT)
	const present, writable, large = 1, 2, 0x80
	le.PutUint64(mem[probePML4:], 0x3000|present|writable)
	le.PutUint64(mem[0x3000:], 0x4000|present|writable)
	le.PutUint64(mem[0x4000:], 0|present|writable|large)
}
