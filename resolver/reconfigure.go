package resolver

import "fmt"

// Prepared is a new config that a Server has checked and built, ready to answer with; until
// Commit, the server answers as before. A box prepares every component before it commits
// any, so a component that refuses its part leaves the server answering with the old config.
// Dropping a Prepared without Commit changes nothing.
type Prepared struct {
	s   *Server
	pol *policy
}

// Prepare checks cfg and builds everything answers depend on (list, TTL, addresses,
// sources, zones, learn mode). What the server's sockets and goroutines were built with
// cannot change while it runs: a different Addr, RateLimit, MaxTCPConns or MaxTCPPerSource is refused, and
// the hooks (Logger, OnQuery, OnLimited, NotifyStarted) stay those given to New.
func (s *Server) Prepare(cfg Config) (*Prepared, error) {
	if cfg.Addr != s.cfg.Addr {
		return nil, fmt.Errorf("resolver: listen address %s cannot change to %s while running", s.cfg.Addr, cfg.Addr)
	}
	if cfg.RateLimit != s.cfg.RateLimit {
		return nil, fmt.Errorf("resolver: rate limit %d cannot change to %d while running", s.cfg.RateLimit, cfg.RateLimit)
	}
	if cfg.MaxTCPConns == 0 {
		cfg.MaxTCPConns = defaultMaxTCPConns
	}
	if cfg.MaxTCPConns != s.cfg.MaxTCPConns {
		return nil, fmt.Errorf("resolver: TCP connection limit %d cannot change to %d while running", s.cfg.MaxTCPConns, cfg.MaxTCPConns)
	}
	if cfg.MaxTCPPerSource == 0 {
		cfg.MaxTCPPerSource = DefaultMaxTCPPerSource
	}
	if cfg.MaxTCPPerSource != s.cfg.MaxTCPPerSource {
		return nil, fmt.Errorf("resolver: TCP connections per source %d cannot change to %d while running", s.cfg.MaxTCPPerSource, cfg.MaxTCPPerSource)
	}
	pol, err := newPolicy(&cfg, s.Addr())
	if err != nil {
		return nil, err
	}
	return &Prepared{s: s, pol: pol}, nil
}

// Commit makes the prepared config the one answers use; queries being answered finish with
// the old one. It cannot fail, and committing twice is the same as once.
func (p *Prepared) Commit() { p.s.pol.Store(p.pol) }
