package virtio

// MMIO register offsets (virtio 1.2, section 4.2.2). All registers below
// ConfigOffset are 32 bits wide and must be accessed with aligned 32-bit
// accesses.
const (
	RegMagicValue        = 0x000
	RegVersion           = 0x004
	RegDeviceID          = 0x008
	RegVendorID          = 0x00c
	RegDeviceFeatures    = 0x010
	RegDeviceFeaturesSel = 0x014
	RegDriverFeatures    = 0x020
	RegDriverFeaturesSel = 0x024
	RegQueueSel          = 0x030
	RegQueueNumMax       = 0x034
	RegQueueNum          = 0x038
	RegQueueReady        = 0x044
	RegQueueNotify       = 0x050
	RegInterruptStatus   = 0x060
	RegInterruptACK      = 0x064
	RegStatus            = 0x070
	RegQueueDescLow      = 0x080
	RegQueueDescHigh     = 0x084
	RegQueueDriverLow    = 0x090
	RegQueueDriverHigh   = 0x094
	RegQueueDeviceLow    = 0x0a0
	RegQueueDeviceHigh   = 0x0a4
	RegSHMSel            = 0x0ac
	RegSHMLenLow         = 0x0b0
	RegSHMLenHigh        = 0x0b4
	RegSHMBaseLow        = 0x0b8
	RegSHMBaseHigh       = 0x0bc
	RegConfigGeneration  = 0x0fc
	// ConfigOffset is where the device-specific configuration space starts.
	ConfigOffset = 0x100
)

// Identification values.
const (
	// MagicValue is "virt" in little-endian.
	MagicValue = 0x74726976
	// Version is the virtio-mmio version implemented (2: virtio 1.x, no
	// legacy interface).
	Version = 2
	// VendorID is "vmmd" in little-endian.
	VendorID = 0x646d6d76
)

// WindowSize is the size of one device's MMIO window.
const WindowSize = 0x1000

// Device status bits (virtio 1.2, section 2.1).
const (
	StatusAcknowledge = 1
	StatusDriver      = 2
	StatusDriverOK    = 4
	StatusFeaturesOK  = 8
	StatusNeedsReset  = 64
	StatusFailed      = 128
)

// Interrupt status bits.
const (
	// IntUsedBuffer reports a used-buffer notification.
	IntUsedBuffer = 1
	// IntConfigChange reports a configuration change (also sent with
	// DEVICE_NEEDS_RESET).
	IntConfigChange = 2
)

// Transport feature bits (virtio 1.2, section 6).
const (
	FeatureIndirectDesc = 1 << 28
	FeatureEventIdx     = 1 << 29
	FeatureVersion1     = 1 << 32
)

// Split virtqueue descriptor and ring flags.
const (
	descFNext     = 1
	descFWrite    = 2
	descFIndirect = 4

	availFNoInterrupt = 1
	usedFNoNotify     = 1
)

// Limits.
const (
	// DefaultQueueMax is the queue size offered when the device does not
	// choose one.
	DefaultQueueMax = 256
	// MaxQueueSize is the largest queue size the split ring format allows.
	MaxQueueSize = 32768
	// MaxIndirect is the most descriptors an indirect table may hold
	// (QEMU's limit; Linux uses at most seg_max+2).
	MaxIndirect = 1024
	// MaxChainBytes bounds the total length of one chain: a used element
	// reports written bytes in 32 bits.
	MaxChainBytes = 1<<32 - 1
)
