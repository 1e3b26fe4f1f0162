package blk

import "github.com/vmmd/vmmd/pkg/devices/virtio"

// vdev is the Device as the transport sees it (virtio.Device); keeping
// these methods on a separate type keeps them out of Device's API.
type vdev Device

var _ virtio.Device = (*vdev)(nil)

// DeviceID implements virtio.Device.
func (v *vdev) DeviceID() uint32 { return DeviceID }

// DeviceFeatures implements virtio.Device.
func (v *vdev) DeviceFeatures() uint64 { return (*Device)(v).features }

// NumQueues implements virtio.Device: virtio-blk without MQ has one queue.
func (v *vdev) NumQueues() int { return 1 }

// ReadConfig implements virtio.Device.
func (v *vdev) ReadConfig(off uint64, data []byte) {
	c := (*Device)(v).configSpace()
	if off < configLen {
		copy(data, c[off:])
	}
}

// WriteConfig ignores writes: no field is writable without
// VIRTIO_BLK_F_CONFIG_WCE, which is not offered.
func (v *vdev) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device.
func (v *vdev) Activate(features uint64, queues []*virtio.Queue) error {
	return (*Device)(v).activate(queues)
}

// Reset implements virtio.Device.
func (v *vdev) Reset() { (*Device)(v).reset() }

// QueueNotify implements virtio.Device.
func (v *vdev) QueueNotify(index int) { (*Device)(v).Notify(index) }
