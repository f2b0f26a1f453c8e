package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Cookie names. Both are HttpOnly, Secure and SameSite=Strict.
const (
	sessionCookie = "lnm_session"
	// signinCookie holds the sign-in form's CSRF token before there is a session: the form
	// must send back the value the cookie holds (double submit).
	signinCookie = "lnm_signin"
)

// Session limits: a session ends after sessionIdle without a request or sessionMax in all;
// at most maxSessions live at once (the oldest goes first).
const (
	sessionIdle = time.Hour
	sessionMax  = 12 * time.Hour
	maxSessions = 1024
)

// session is one signed-in browser.
type session struct {
	user    string
	role    Role
	csrf    string // the token every change must carry
	started time.Time
	seen    time.Time
}

// sessions holds the live sessions by their cookie value. They live in memory: a restart
// signs everybody out.
type sessions struct {
	mu sync.Mutex
	m  map[string]*session
}

func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// start makes a session for u and returns its cookie value.
func (s *sessions) start(u user, now time.Time) (string, *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]*session{}
	}
	s.expire(now)
	if len(s.m) >= maxSessions {
		var oldest string
		for k, v := range s.m {
			if oldest == "" || v.started.Before(s.m[oldest].started) {
				oldest = k
			}
		}
		delete(s.m, oldest)
	}
	id := newToken()
	ss := &session{user: u.Name, role: u.Role, csrf: newToken(), started: now, seen: now}
	s.m[id] = ss
	return id, ss
}

// expire drops ended sessions; s.mu is held.
func (s *sessions) expire(now time.Time) {
	for k, v := range s.m {
		if now.Sub(v.seen) > sessionIdle || now.Sub(v.started) > sessionMax {
			delete(s.m, k)
		}
	}
}

// get returns a copy of the live session with cookie value id, or false: unknown (forged,
// ended by a restart or sign-out) or expired.
func (s *sessions) get(id string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return session{}, false
	}
	if now.Sub(v.seen) > sessionIdle || now.Sub(v.started) > sessionMax {
		delete(s.m, id)
		return session{}, false
	}
	v.seen = now
	return *v, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// setCookie sets a cookie the browser keeps to itself: HttpOnly, Secure, SameSite=Strict.
func setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode,
	})
}

// sameToken compares two tokens in constant time; empty never matches.
func sameToken(a, b string) bool {
	return a != "" && len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Sign-in throttling: after throttleFree failed sign-ins from one source, each further
// attempt must wait twice as long as the last (1 s, 2 s, 4 s, … up to throttleMaxWait); a
// success clears the source. Sources are addresses, IPv6 ones by their /64.
const (
	throttleFree    = 3
	throttleMaxWait = 5 * time.Minute
	throttleForget  = time.Hour // a source quiet this long starts over
	throttleSources = 4096      // sources remembered at once; past it the quietest are dropped
)

// failures is one source's failed sign-ins.
type failures struct {
	n    int
	last time.Time
}

// wait is how long after its last failure a source must wait before it may try again; zero:
// it may try now. It is the pure decision throttle applies.
func (f failures) wait(now time.Time) time.Duration {
	if f.n < throttleFree || now.Sub(f.last) > throttleForget {
		return 0
	}
	d := time.Second << min(f.n-throttleFree, 20)
	d = min(d, throttleMaxWait)
	if left := f.last.Add(d).Sub(now); left > 0 {
		return left
	}
	return 0
}

// throttle counts failed sign-ins per source.
type throttle struct {
	mu sync.Mutex
	m  map[netip.Prefix]failures
}

func sourceKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, 32)
}

// wait says how long src must still wait.
func (t *throttle) wait(src netip.Addr, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[sourceKey(src)].wait(now)
}

// failed counts a failed sign-in from src.
func (t *throttle) failed(src netip.Addr, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[netip.Prefix]failures{}
	}
	if len(t.m) >= throttleSources {
		for k, v := range t.m {
			if now.Sub(v.last) > throttleForget || len(t.m) >= throttleSources {
				delete(t.m, k)
			}
		}
	}
	k := sourceKey(src)
	f := t.m[k]
	if now.Sub(f.last) > throttleForget {
		f = failures{}
	}
	f.n++
	f.last = now
	t.m[k] = f
}

// succeeded clears src.
func (t *throttle) succeeded(src netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m, sourceKey(src))
}
