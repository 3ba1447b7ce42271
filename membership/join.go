package membership

import (
	"context"
	"net"
	"time"
)

// joinLoop joins the seeds with capped exponential backoff until one
// answers, then every RejoinInterval re-joins the seeds that are not among
// the live members, so that two halves of a healed partition merge again.
func (c *Cluster) joinLoop() {
	if len(c.cfg.Join) == 0 {
		return
	}
	backoff := pick(c.cfg.Profile == ProfileFast, 50*time.Millisecond, 500*time.Millisecond)
	for !c.joinStep(false) {
		if !c.sleep(backoff) {
			return
		}
		backoff = min(2*backoff, c.cfg.JoinBackoffMax)
	}
	for c.sleep(c.cfg.RejoinInterval) {
		c.joinStep(true)
	}
}

// joinStep resolves the seeds (DNS names afresh each time) and joins them;
// with onlyMissing it skips seeds already among the live members. It
// reports whether at least one seed answered, or none needed joining.
func (c *Cluster) joinStep(onlyMissing bool) bool {
	ml, err := c.memberlist()
	if err != nil {
		return false
	}
	seeds := c.resolveSeeds()
	if onlyMissing {
		live := make(map[string]bool)
		for _, m := range c.Members() {
			if m.State == Alive || m.State == Suspect {
				live[m.Addr] = true
			}
		}
		var missing []string
		for _, s := range seeds {
			if !live[s] {
				missing = append(missing, s)
			}
		}
		seeds = missing
	}
	if len(seeds) == 0 {
		return true
	}
	n, err := ml.Join(seeds)
	if n > 0 {
		c.log.Info("membership: joined", "contacted", n, "seeds", seeds)
		return true
	}
	c.joinFails.Add(1)
	lvl := pick(onlyMissing, c.log.Debug, c.log.Warn)
	lvl("membership: join failed, will retry", "seeds", seeds, "err", err)
	return false
}

// resolveSeeds turns the Join list into "ip:port" addresses other than our
// own (joining ourselves would count as success). Names that fail to
// resolve are logged and skipped this round.
func (c *Cluster) resolveSeeds() []string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	self := c.Addr()
	var out []string
	for _, seed := range c.cfg.Join {
		host, port, err := net.SplitHostPort(seed)
		if err != nil {
			c.log.Warn("membership: bad seed address", "seed", seed, "err", err)
			continue
		}
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			c.log.Warn("membership: cannot resolve seed", "seed", seed, "err", err)
			continue
		}
		for _, ip := range ips {
			if a := net.JoinHostPort(ip, port); a != self {
				out = append(out, a)
			}
		}
	}
	return out
}

// sleep waits d on the configured clock; it returns false on Shutdown.
func (c *Cluster) sleep(d time.Duration) bool {
	t := c.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.stop:
		return false
	case <-t.C():
		return true
	}
}
