package migrate

import (
	"context"
	"fmt"
	"time"

	"github.com/vmmd/vmmd/pkg/migrate/stream"
)

// batchPages is how many pages go in one RAM section (1 MiB of data): big
// enough to amortise framing, small enough that cancel and the
// destination's refusal are noticed quickly.
const batchPages = 256

// sendPass sends every pending page. pass > 0 announces a numbered pass;
// the final pass (0) is not announced separately.
func (s *source) sendPass(ctx context.Context, pass uint32) error {
	if pass > 0 {
		if err := s.w.WriteSection(stream.KindPass, stream.PassPayload(pass)); err != nil {
			return fmt.Errorf("send RAM pass %d: %w", pass, err)
		}
	}
	var b stream.RAMBatch
	var zero, normal uint64
	t0 := time.Now()
	flush := func() error {
		if b.Pages() == 0 {
			return nil
		}
		if err := s.w.WriteSection(stream.KindRAM, b.Payload()); err != nil {
			return fmt.Errorf("send RAM: %w", err)
		}
		b.Reset()
		s.j.mu.Lock()
		s.j.c.duplicate += zero
		s.j.c.normal += normal
		if s.j.c.remaining >= (zero+normal)*pageSize {
			s.j.c.remaining -= (zero + normal) * pageSize
		}
		if d := time.Since(t0); d > 0 {
			s.j.c.pagesPerSec = uint64(float64(zero+normal) / d.Seconds())
		}
		s.j.mu.Unlock()
		zero, normal = 0, 0
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
		page, err := ram.Slice(gpa, pageSize)
		if err != nil {
			return fmt.Errorf("read guest page %#x: %w", gpa, err)
		}
		if b.Add(gpa, page) {
			zero++
		} else {
			normal++
		}
		if b.Pages() >= batchPages {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := flush(); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("send RAM: %w", err)
	}
	return nil
}
