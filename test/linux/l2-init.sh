#!/bin/sh
# L2 /init (Debian kernel under vmmd): load virtio, report, run the scenario
# named by vmmdtest= on the kernel command line, power off.
#   vmmdtest=write   write L2's marker at sector 2048 of /dev/vda and sync
#   vmmdtest=reboot  first boot (no flag at sector 4096): set the flag, reboot -f;
#                    second boot: report L2-SECOND-BOOT and power off
#   vmmdtest=migrate the tick loop that L1 migrates between vmmds: tick n
#                    writes "L2-REC n" to sector 8192 + n%4096 with O_DIRECT
#                    and fsync, from vCPU n%cpus, reads it back with O_DIRECT
#                    and prints "L2-TICK n cpu=C up=UPTIME end" (or an
#                    L2-TICK-FAIL line), about 4 times a second. It stops
#                    when sector 8191 holds L1's "L2-STOP" (read with
#                    O_DIRECT each tick, so it comes from vmmd's file), or
#                    after l2ticks ticks (2400), prints L2-TICK-END n and
#                    powers off.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "L2-INIT uptime=$(cut -d' ' -f1 /proc/uptime)"
MODE=
TICKS=2400
for a in $(cat /proc/cmdline); do
  case $a in
    vmmdtest=*) MODE=${a#vmmdtest=} ;;
    l2ticks=*) TICKS=${a#l2ticks=} ;;
  esac
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
  migrate)
    # Every disk access is O_DIRECT: the guest's page cache would answer a
    # read-back without asking the device. Each tick's I/O runs on the
    # next vCPU in turn, so a vCPU that stops running after the migration
    # stops the count.
    CPUS=$(nproc)
    n=0
    while [ $n -lt "$TICKS" ]; do
      n=$((n+1))
      sec=$((8192 + n % 4096))
      cpu=$((n % CPUS))
      printf 'L2-REC %d\n' $n | taskset -c $cpu dd of=/dev/vda bs=512 seek=$sec conv=notrunc,sync,fsync oflag=direct 2>/dev/null ||
        echo "L2-TICK-FAIL $n write to sector $sec failed"
      got=$(taskset -c $cpu dd if=/dev/vda bs=512 skip=$sec count=1 iflag=direct 2>/dev/null | head -n 1)
      if [ "$got" = "L2-REC $n" ]; then
        echo "L2-TICK $n cpu=$cpu up=$(cut -d' ' -f1 /proc/uptime) end"
      else
        echo "L2-TICK-FAIL $n sector $sec read back '$got'"
      fi
      if dd if=/dev/vda bs=512 skip=8191 count=1 iflag=direct 2>/dev/null | grep -q '^L2-STOP'; then
        break
      fi
      sleep 0.25
    done
    echo "L2-TICK-END $n"
    ;;
esac
poweroff -f
