package console

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/lnm-project/lnm/adminapi"
	"github.com/lnm-project/lnm/internal/atomicfile"
)

// Role is what a console user may do. The zero Role is no role: nothing at all.
type Role string

// The two roles: a viewer sees every page; an admin also changes the list and the mode.
const (
	RoleViewer Role = "viewer"
	RoleAdmin  Role = "admin"
)

// ParseRole reads "viewer" or "admin".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleViewer, RoleAdmin:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want viewer or admin", s)
}

// UsersFile is the name of the users file in the console's directory.
const UsersFile = "users"

// user is one line of the users file: NAME ROLE BCRYPT-HASH.
type user struct {
	Name string
	Role Role
	Hash []byte
}

// MinPassword is the shortest password passwd accepts.
const MinPassword = 8

// readUsers reads the users file. A missing file is no users (nobody can sign in). Errors
// name the file and line.
func readUsers(path string) ([]user, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("console users: %w", err)
	}
	var out []user
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want NAME ROLE BCRYPT-HASH", path, n)
		}
		if err := adminapi.CheckUser(f[0]); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		role, err := ParseRole(f[1])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		if _, err := bcrypt.Cost([]byte(f[2])); err != nil {
			return nil, fmt.Errorf("%s:%d: password hash: %v", path, n, err)
		}
		out = append(out, user{Name: f[0], Role: role, Hash: []byte(f[2])})
	}
	return out, sc.Err()
}

// SetPassword sets USER's password and role in the users file at path, adding the user when
// new; the file is replaced atomically with mode 0600. It is what `lnm console passwd` does.
func SetPassword(path, name string, role Role, password string) error {
	if err := adminapi.CheckUser(name); err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	if len(password) < MinPassword {
		return fmt.Errorf("password: want at least %d characters", MinPassword)
	}
	if len(password) > 72 {
		return errors.New("password: bcrypt takes at most 72 bytes")
	}
	users, err := readUsers(path)
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcryptCost)
	if err != nil {
		return fmt.Errorf("password: %w", err)
	}
	found := false
	for i := range users {
		if users[i].Name == name {
			users[i].Role, users[i].Hash, found = role, hash, true
		}
	}
	if !found {
		users = append(users, user{Name: name, Role: role, Hash: hash})
	}
	var b bytes.Buffer
	b.WriteString("# lnm web console users: NAME ROLE BCRYPT-HASH; written by `lnm console passwd`\n")
	for _, u := range users {
		fmt.Fprintf(&b, "%s %s %s\n", u.Name, u.Role, u.Hash)
	}
	if err := atomicfile.Write(path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("console users: %w", err)
	}
	return nil
}

// bcryptCost is the work factor of new hashes (the handler tests lower it).
var bcryptCost = bcrypt.DefaultCost

// dummyHash is compared against when the user is unknown, so that a wrong name costs as much
// time as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user, no such password"), bcryptCost)
	return h
})

// authenticate returns the user whose name and password match, reading the file each time
// (an edit by `lnm console passwd` applies at the next sign-in).
func authenticate(path, name, password string) (user, error) {
	users, err := readUsers(path)
	if err != nil {
		return user{}, err
	}
	for _, u := range users {
		if u.Name == name {
			if bcrypt.CompareHashAndPassword(u.Hash, []byte(password)) != nil {
				return user{}, errBadCredentials
			}
			return u, nil
		}
	}
	bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
	return user{}, errBadCredentials
}

var errBadCredentials = errors.New("wrong user name or password")
