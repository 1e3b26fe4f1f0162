package migrate

import (
	"context"
	"fmt"
	"time"

	"github.com/vmmd/vmmd/pkg/migrate/stream"
)

// batchPages and batchBytes bound one RAM section (1 MiB of data, or many
// small deltas): big enough to amortise framing, small enough that cancel
// and the destination's refusal are noticed quickly.
const (
	batchPages = 4096
	batchBytes = 1 << 20
)

// passStats are what one pass sent, for the convergence estimate.
type passStats struct {
	pages   uint64 // pages taken from the dirty set
	data    uint64 // of which sent whole or as a delta (not zero, not unchanged)
	elapsed time.Duration
	bytes   uint64
}

// sendPass sends every pending page. pass > 0 announces a numbered pass;
// the final pass (0) is not announced separately. From the second pass on,
// pages the cache holds go as deltas, and pages without a slot get one
// while the cache has room (except in the final pass): a page dirtied
// again after the first pass is likely to be dirtied again.
func (s *source) sendPass(ctx context.Context, pass uint32) (passStats, error) {
	var ps passStats
	b0 := s.w.Bytes()
	t0 := time.Now()
	if pass > 0 {
		if err := s.w.WriteSection(stream.KindPass, stream.PassPayload(pass)); err != nil {
			return ps, fmt.Errorf("send RAM pass %d: %w", pass, err)
		}
	}
	cache := s.cache
	if pass == 1 {
		cache = nil // everything goes whole once
	}
	var b stream.RAMBatch
	// unchanged: pages whose delta came out empty (nothing to send).
	var zero, normal, delta, unchanged, deltaBytes, miss, overflow uint64
	flush := func() error {
		if b.Pages() == 0 {
			return nil
		}
		if err := s.w.WriteSection(stream.KindRAM, b.Payload()); err != nil {
			return fmt.Errorf("send RAM: %w", err)
		}
		b.Reset()
		s.j.mu.Lock()
		c := &s.j.c
		c.duplicate += zero
		c.normal += normal
		c.xbzrlePages += delta
		c.xbzrleBytes += deltaBytes
		c.cacheMiss += miss
		c.overflow += overflow
		if done := zero + normal + delta + unchanged; c.remaining >= done*pageSize {
			c.remaining -= done * pageSize
		}
		if d := time.Since(t0); d > 0 {
			c.pagesPerSec = uint64(float64(ps.pages) / d.Seconds())
		}
		s.j.mu.Unlock()
		zero, normal, delta, unchanged, deltaBytes, miss, overflow = 0, 0, 0, 0, 0, 0, 0
		if err := ctx.Err(); err != nil {
			return err
		}
		return s.checkAbort()
	}
	ram := s.vm.RAM()
	s.j.mu.Lock()
	s.j.c.remaining = s.pending.count() * pageSize
	s.j.mu.Unlock()
	err := s.pending.take(func(gpa uint64) error {
		ps.pages++
		page, err := ram.Slice(gpa, pageSize)
		if err != nil {
			return fmt.Errorf("read guest page %#x: %w", gpa, err)
		}
		var slot []byte
		if cache != nil {
			if slot = cache.lookup(gpa); slot != nil {
				n := b.Len()
				switch b.AddDelta(gpa, page, slot) {
				case stream.DeltaSent:
					delta++
					deltaBytes += uint64(b.Len() - n)
					ps.data++
					return s.flushIfFull(&b, flush)
				case stream.DeltaUnchanged:
					unchanged++ // the destination has it already
					return nil
				}
				overflow++ // slot is partly updated: refreshed below
			} else if pass != 0 {
				// A slot pays off in a later pass; the last pass (0),
				// which is downtime, has none, and a new slot may cost an
				// allocation.
				slot = cache.insert(gpa)
			}
			miss++
		}
		if b.Add(gpa, page) {
			zero++
			if slot != nil {
				clear(slot)
			}
		} else {
			normal++
			ps.data++
			if slot != nil {
				copy(slot, b.LastPage())
			}
		}
		return s.flushIfFull(&b, flush)
	})
	if err != nil {
		return ps, err
	}
	if err := flush(); err != nil {
		return ps, err
	}
	if err := s.w.Flush(); err != nil {
		return ps, fmt.Errorf("send RAM: %w", err)
	}
	ps.elapsed = time.Since(t0)
	ps.bytes = s.w.Bytes() - b0
	return ps, nil
}

// flushIfFull sends the batch once it reaches a section's bounds.
func (s *source) flushIfFull(b *stream.RAMBatch, flush func() error) error {
	if b.Pages() >= batchPages || b.Len() >= batchBytes {
		return flush()
	}
	return nil
}
