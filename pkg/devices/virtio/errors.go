package virtio

import "errors"

// ErrMalformed is wrapped by every error about a ring or descriptor the
// driver set up wrongly; the device then needs a reset.
var ErrMalformed = errors.New("malformed virtqueue")

// ErrBadState is wrapped by every SetState refusal.
var ErrBadState = errors.New("invalid virtio transport state")
