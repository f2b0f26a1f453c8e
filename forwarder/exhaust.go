package forwarder

import (
	"errors"
	"syscall"
)

// outOfDescriptors reports whether err is the process or the system running out of file
// descriptors (EMFILE, ENFILE): the box's own exhaustion, to be named as such.
func outOfDescriptors(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}
