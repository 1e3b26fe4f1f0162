package blk

import "encoding/binary"

// DeviceID is virtio-blk's device ID.
const DeviceID = 2

// Feature bits (virtio 1.2, section 5.2.3).
const (
	FeatureSegMax  = 1 << 2
	FeatureRO      = 1 << 5
	FeatureBlkSize = 1 << 6
	FeatureFlush   = 1 << 9
)

// Request types and status values (virtio 1.2, section 5.2.6).
const (
	TypeIn    = 0
	TypeOut   = 1
	TypeFlush = 4
	TypeGetID = 8

	StatusOK     = 0
	StatusIOErr  = 1
	StatusUnsupp = 2
)

// SectorSize is the unit of virtio-blk sector numbers and of capacity.
const SectorSize = 512

// IDLen is the length of the GET_ID answer.
const IDLen = 20

// headerLen is the size of struct virtio_blk_req's header (type,
// reserved, sector).
const headerLen = 16

// configLen is the size of the configuration space served (through
// num_queues); reads past it return zeros.
const configLen = 0x24

// configSpace returns the configuration space (struct virtio_blk_config).
func (d *Device) configSpace() [configLen]byte {
	var c [configLen]byte
	binary.LittleEndian.PutUint64(c[0x00:], d.capacity.Load())
	binary.LittleEndian.PutUint32(c[0x0c:], d.segMax)
	binary.LittleEndian.PutUint32(c[0x14:], SectorSize)
	binary.LittleEndian.PutUint16(c[0x22:], 1)
	return c
}
