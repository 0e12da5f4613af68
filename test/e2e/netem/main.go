// netem: a userspace delay link for the e2e tests, for kernels without sch_netem (this project's CI runs
// on Firecracker VMs whose kernel has neither netem nor dummy devices).
//
// It opens two TUN devices, one in the caller's network namespace ("near") and one inside the named one
// ("far", created with `ip netns add`), and moves every IP packet between them, holding it for the
// one-way delay: a round trip across the link (the TCP SYN/SYN-ACK, each TLS flight) pays 2 x delay, as
// it would to a distant apiserver. Optionally it listens on a TCP address inside the far namespace and
// forwards each connection, in the near namespace (on loopback, undelayed), to -forward: a client in the
// near namespace that dials the far address reaches, say, the e2e stack's apiserver 2 x delay away.
//
// It prints "ready" on stdout once both devices exist (and the listener listens); the caller then gives
// the devices their addresses and brings them up (`ip addr`, `ip link`). The devices are not persistent:
// they vanish when this process exits. Standard library only: no module download to build it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

const (
	tunSetIff = 0x400454ca // TUNSETIFF = _IOW('T', 202, int)
	iffTun    = 0x0001
	iffNoPi   = 0x1000
	// A full queue drops, as a real link's would; at this depth it only happens under a flood.
	queueDepth = 8192
)

func main() {
	netns := flag.String("netns", "", "name of the far network namespace (under /var/run/netns)")
	near := flag.String("near", "", "name of the TUN device to create in this namespace")
	far := flag.String("far", "", "name of the TUN device to create in the far namespace")
	delay := flag.Duration("delay", 0, "one-way delay, each direction (a round trip pays twice this)")
	listen := flag.String("listen", "", "TCP address to listen on inside the far namespace (optional)")
	forward := flag.String("forward", "", "where -listen's connections go, dialled from this namespace")
	// The tests keep a pipe to stdin open: when the test process dies, so does the link.
	stdinEOF := flag.Bool("exit-on-stdin-eof", false, "exit when stdin reaches end of file")
	flag.Parse()
	if *netns == "" || *near == "" || *far == "" || (*listen == "") != (*forward == "") {
		fmt.Fprintln(os.Stderr, "netem: -netns, -near and -far are required; -listen and -forward go together")
		os.Exit(2)
	}
	if *stdinEOF {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
	}
	if err := run(*netns, *near, *far, *delay, *listen, *forward); err != nil {
		fmt.Fprintln(os.Stderr, "netem:", err)
		os.Exit(1)
	}
}

func run(netns, nearName, farName string, delay time.Duration, listen, forward string) error {
	near, err := openTun(nearName)
	if err != nil {
		return fmt.Errorf("TUN %s: %w", nearName, err)
	}
	var far *os.File
	var ln net.Listener
	err = inNetns("/var/run/netns/"+netns, func() error {
		if far, err = openTun(farName); err != nil {
			return fmt.Errorf("TUN %s in %s: %w", farName, netns, err)
		}
		if listen != "" {
			if ln, err = net.Listen("tcp4", listen); err != nil {
				return fmt.Errorf("listen on %s in %s: %w", listen, netns, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	go pump(near, far, delay)
	go pump(far, near, delay)
	if ln != nil {
		go serve(ln, forward)
	}
	fmt.Println("ready")
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	return nil
}

// openTun creates a TUN device (IP packets, no packet-information header) in the calling thread's
// network namespace.
func openTun(name string) (*os.File, error) {
	if len(name) >= 16 {
		return nil, errors.New("device name longer than 15 bytes")
	}
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	var ifr [40]byte // struct ifreq: name[16], then flags (short)
	copy(ifr[:16], name)
	*(*uint16)(unsafe.Pointer(&ifr[16])) = iffTun | iffNoPi
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		syscall.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", e)
	}
	// Non-blocking, so the runtime's poller serves reads instead of a thread each.
	return os.NewFile(uintptr(fd), name), nil
}

// inNetns runs f on an OS thread switched into the namespace at path, then switches the thread back. What
// f creates (a TUN device, a listening socket) stays in that namespace for good.
func inNetns(path string, f func() error) error {
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer home.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("network namespace: %w", err)
	}
	defer target.Close()
	if err := setns(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := setns(home); err != nil {
		// The thread stays locked, so the runtime retires it with this goroutine instead of reusing it.
		return fmt.Errorf("switching back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// setns(2)'s number: package syscall does not name it on every architecture.
var sysSetns = map[string]uintptr{"amd64": 308, "arm64": 268, "riscv64": 268, "386": 346, "arm": 375}

func setns(ns *os.File) error {
	nr, ok := sysSetns[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("setns: unknown syscall number on %s", runtime.GOARCH)
	}
	if _, _, e := syscall.RawSyscall(nr, ns.Fd(), syscall.CLONE_NEWNET, 0); e != 0 {
		return fmt.Errorf("setns: %w", e)
	}
	return nil
}

type packet struct {
	data []byte
	due  time.Time
}

// pump moves packets from src to dst, each delivered `delay` after it was read. The delay is the same for
// every packet, so a FIFO keeps their order (no reordering, as on a plain link).
func pump(src, dst *os.File, delay time.Duration) {
	q := make(chan packet, queueDepth)
	go func() {
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			// A write error (the device went down) drops the packet, as a link would.
			_, _ = dst.Write(p.data)
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "netem: read:", err)
			os.Exit(1)
		}
		select {
		case q <- packet{data: append([]byte(nil), buf[:n]...), due: time.Now().Add(delay)}:
		default:
		}
	}
}

// serve forwards each connection accepted in the far namespace to `to`, dialled in this one.
func serve(ln net.Listener, to string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "netem: accept:", err)
			os.Exit(1)
		}
		go relay(c, to)
	}
}

func relay(c net.Conn, to string) {
	defer c.Close()
	u, err := net.Dial("tcp", to)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go half(u, c)
	go half(c, u)
	<-done
	<-done
}
