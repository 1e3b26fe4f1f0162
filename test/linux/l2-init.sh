#!/bin/sh
# L2 /init (Debian kernel under vmmd): load virtio, report, power off.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "L2-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
for m in virtio_ring virtio virtio_mmio virtio_blk; do
  insmod /lib/modules/$m.ko || echo "L2-INSMOD-FAIL $m"
done
# virtio-blk probes asynchronously; give it a moment to register.
n=0
while [ $n -lt 20 ] && ! ls /sys/block | grep -q '^vd'; do sleep 0.1; n=$((n+1)); done
echo "L2-DEVICES virtio: $(ls /sys/bus/virtio/devices 2>/dev/null | tr '\n' ' ')"
echo "L2-DEVICES platform-mmio: $(ls /sys/bus/platform/devices 2>/dev/null | grep -i -E 'LNRO|virtio|mmio' | tr '\n' ' ')"
echo "L2-CLOCKSOURCE $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
if [ -b /dev/vda ]; then
  echo "L2-DISK0 $(dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 27)"
fi
echo "L2-READY disks=$(ls /sys/block | tr '\n' ',' | sed 's/,$//') cpus=$(nproc) uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
