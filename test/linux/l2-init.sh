#!/bin/sh
# L2 /init (Debian kernel under vmmd): load virtio, report, run the scenario
# named by vmmdtest= on the kernel command line, power off.
#   vmmdtest=write   write L2's marker at sector 2048 of /dev/vda and sync
#   vmmdtest=reboot  first boot (no flag at sector 4096): set the flag, reboot -f;
#                    second boot: report L2-SECOND-BOOT and power off
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "L2-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
MODE=
for a in $(cat /proc/cmdline); do
  case $a in vmmdtest=*) MODE=${a#vmmdtest=} ;; esac
done
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
echo "L2-READY disks=$(ls /sys/block | tr '\n' ',' | sed 's/,$//') cpus=$(nproc) mode=${MODE:-none} uptime=$(cut -d' ' -f1 /proc/uptime)"
case $MODE in
  write)
    printf 'L2-WROTE-MARKER-9876543210\n' | dd of=/dev/vda bs=512 seek=2048 conv=notrunc 2>/dev/null
    sync
    echo "L2-WRITE done rc=$?"
    ;;
  reboot)
    if dd if=/dev/vda bs=512 skip=4096 count=1 2>/dev/null | grep -q 'L2-REBOOT-FLAG'; then
      echo "L2-SECOND-BOOT"
    else
      printf 'L2-REBOOT-FLAG\n' | dd of=/dev/vda bs=512 seek=4096 conv=notrunc 2>/dev/null
      sync
      echo "L2-REBOOTING"
      reboot -f
      sleep 30
    fi
    ;;
esac
poweroff -f
