package core

import (
	"golang.org/x/sys/unix"
)

// Socket options beyond asyncio's, each opt-in.

// setKeepalive turns TCP keepalive on with the given settings (zero fields
// keep the system's defaults).
func (s *Socket) setKeepalive(k *Keepalive) error {
	var err error
	cerr := s.control(func(fd int) {
		set := func(level, opt, v int) {
			if err == nil {
				err = unix.SetsockoptInt(fd, level, opt, v)
			}
		}
		set(unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		if k.Idle > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, max(1, int(k.Idle.Seconds())))
		}
		if k.Interval > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, max(1, int(k.Interval.Seconds())))
		}
		if k.Count > 0 {
			set(unix.IPPROTO_TCP, unix.TCP_KEEPCNT, k.Count)
		}
	})
	if cerr != nil {
		return osErrorFrom(cerr)
	}
	if err != nil {
		return osErrorFrom(err)
	}
	return nil
}

// bindNoPort sets IP_BIND_ADDRESS_NO_PORT before binding to port 0: the
// kernel then picks the port at connect time, knowing the remote address, so
// one local port can serve many destinations (Linux 4.2+; ignored elsewhere).
func bindNoPort(fd int, local SockAddr) {
	if local.Port == 0 && (local.Family == unix.AF_INET || local.Family == unix.AF_INET6) {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}
}
