package console

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ReadPassword reads the password: on a terminal twice with echo off, otherwise one line.
func ReadPassword(r io.Reader, prompt io.Writer, user string) (string, error) {
	f, ok := r.(*os.File)
	if ok {
		if t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			quiet := *t
			quiet.Lflag &^= unix.ECHO
			if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, &quiet); err == nil {
				defer unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t)
				br := bufio.NewReader(f)
				fmt.Fprintf(prompt, "password for %s: ", user)
				a, err := readLine(br)
				fmt.Fprintf(prompt, "\nagain: ")
				b, err2 := readLine(br)
				fmt.Fprintln(prompt)
				if err = errors.Join(err, err2); err != nil {
					return "", err
				}
				if a != b {
					return "", errors.New("the passwords differ")
				}
				return a, nil
			}
		}
	}
	return readLine(bufio.NewReader(r))
}

func readLine(br *bufio.Reader) (string, error) {
	s, err := br.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && s != "") {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	return strings.TrimRight(s, "\r\n"), nil
}

// OwnLikeParent gives the console directory and the users file the owner of the directory
// above (the service's state directory, lnm:lnm) when root made them: the service must read
// the file that `sudo lnm console passwd` wrote.
func OwnLikeParent(dir, file string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Dir(dir), &st); err != nil {
		return fmt.Errorf("console directory: %w", err)
	}
	for _, p := range []string{dir, file} {
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("console users: %w", err)
		}
	}
	return nil
}
