package splice

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// awaitData waits, within the connection's read deadline, until the socket has bytes queued
// or has reached EOF or an error, and returns how many bytes are queued (0 at EOF) or the
// socket's error (a reset). It holds no buffer and no pipe while it waits: the
// netpoller wakes it. A deadline is os.ErrDeadlineExceeded; a closed conn net.ErrClosed.
func awaitData(rc syscall.RawConn) (int, error) {
	var queued int
	var sockErr error
	err := rc.Read(func(fd uintptr) bool {
		n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
		if err != nil || n > 0 {
			queued = n
			return true
		}
		// Nothing queued: not readable yet (wait), EOF, or an error pending. A one-byte peek
		// tells them apart without taking any data; but it does take a pending error (a
		// reset): the kernel reports it once, so it is returned here, or the next read would
		// see a plain EOF and a reset stream would be half-closed instead of ended.
		var b [1]byte
		_, _, err = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return false
		}
		sockErr = err
		return true
	})
	if err == nil && sockErr != nil {
		err = os.NewSyscallError("recvfrom", sockErr)
	}
	return queued, err
}
