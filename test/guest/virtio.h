/* virtio-mmio transport and virtio-blk queue, shared by virtio.c (discovery,
 * device set-up, request engine) and disk.c (serial commands, records,
 * benchmark). Everything runs at CPL3; register accesses are exits. */
#ifndef VIRTIO_H
#define VIRTIO_H

#include "guest.h"

/* Guest-physical layout, below the 16 MiB workload region. Per disk: a
 * 16 KiB control block in .bss (descriptor table and avail ring in the
 * first page, used ring in the second, request headers, status bytes and
 * GET_ID buffers in the third), and MAX_SLOTS data buffers of SLOT_BYTES
 * each from DISK_DATA_BASE. The control blocks are in the image because
 * the first touch of a fresh 2 MiB region of guest RAM costs ~5 ms on PVM
 * (shadow paging) and boot should not pay it; the data buffers pay it on
 * the first disk command that uses them. */
#define MAX_DISKS 8
#define MAX_SLOTS 16
#define SLOT_BYTES 65536u
#define QUEUE_MAX 64
#define DISK_CTL_SIZE 0x4000ull
#define DISK_DATA_BASE 0x500000ull
#define DISK_DATA_SIZE ((u64)MAX_SLOTS * SLOT_BYTES)
#define DISK_MEM_END (DISK_DATA_BASE + MAX_DISKS * DISK_DATA_SIZE) /* 13 MiB */

/* virtio-mmio registers */
#define VM_MAGIC 0x000
#define VM_VERSION 0x004
#define VM_DEVICE_ID 0x008
#define VM_VENDOR_ID 0x00c
#define VM_DEV_FEATURES 0x010
#define VM_DEV_FEATURES_SEL 0x014
#define VM_DRV_FEATURES 0x020
#define VM_DRV_FEATURES_SEL 0x024
#define VM_GUEST_PAGE_SIZE 0x028 /* legacy */
#define VM_QUEUE_SEL 0x030
#define VM_QUEUE_NUM_MAX 0x034
#define VM_QUEUE_NUM 0x038
#define VM_QUEUE_ALIGN 0x03c /* legacy */
#define VM_QUEUE_PFN 0x040   /* legacy */
#define VM_QUEUE_READY 0x044
#define VM_QUEUE_NOTIFY 0x050
#define VM_INT_STATUS 0x060
#define VM_INT_ACK 0x064
#define VM_STATUS 0x070
#define VM_QUEUE_DESC_LO 0x080
#define VM_QUEUE_DESC_HI 0x084
#define VM_QUEUE_AVAIL_LO 0x090
#define VM_QUEUE_AVAIL_HI 0x094
#define VM_QUEUE_USED_LO 0x0a0
#define VM_QUEUE_USED_HI 0x0a4
#define VM_CONFIG_GEN 0x0fc
#define VM_CONFIG 0x100

#define VIRTIO_MAGIC 0x74726976 /* "virt" */
#define VIRTIO_ID_BLOCK 2

#define ST_ACKNOWLEDGE 1
#define ST_DRIVER 2
#define ST_DRIVER_OK 4
#define ST_FEATURES_OK 8
#define ST_FAILED 128

#define F_BLK_SEG_MAX (1ull << 2)
#define F_BLK_RO (1ull << 5)
#define F_BLK_BLK_SIZE (1ull << 6)
#define F_BLK_FLUSH (1ull << 9)
#define F_VERSION_1 (1ull << 32)

#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_T_FLUSH 4
#define BLK_T_GET_ID 8
/* request types whose data the device reads: OUT, DISCARD, WRITE_ZEROES, SECURE_ERASE */
static inline int blk_type_out(u32 t) { return t == 1 || t == 11 || t == 13 || t == 14; }

#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define BLK_S_UNSUPP 2
#define BLK_S_TIMEOUT 0x100 /* driver-side: no completion within the timeout */
#define BLK_S_BUSY 0x101    /* driver-side: every slot still held by the device */

enum { SLOT_FREE, SLOT_BUSY, SLOT_DONE, SLOT_LOST };

struct slot {
	int state;
	int timed_out; /* DONE because of the timeout: becomes LOST when consumed */
	u32 type;
	u64 sector;
	u32 bytes;
	u64 t_submit; /* run_clock() */
	u32 status;   /* BLK_S_* once DONE */
	u64 tag;      /* for the caller */
};

struct disk {
	unsigned index;
	u64 base;
	u32 irq;
	int version; /* 1 legacy, 2 modern */
	u64 offered, features;
	u64 capacity; /* 512-byte sectors */
	int ro;
	u32 blk_size, seg_max;
	char id[21];
	unsigned qsize, nslots;
	u64 ctl, data;
	u16 avail_idx, published, used_seen;
	int irq_routed;     /* an IOAPIC has the pin */
	int irq_programmed; /* its redirection entry was written */
	int irq_on;
	struct slot slot[MAX_SLOTS];
	u64 requests, errors, timeouts, bogus;
};

struct disks {
	unsigned n;
	struct disk d[MAX_DISKS];
	int irq_mode;
	u64 timeout_ms;
	u64 seed;
	const struct clock *clk;
	const struct platform *pf;
};

extern struct disks disks;

/* ---- the split virtqueue in a disk's control block --------------------
 * Page 0: descriptor table (16 * qsize bytes), then the avail ring; page 1:
 * the used ring; page 2: request headers (16 bytes per slot), status bytes,
 * the GET_ID buffer, and the `evil` commands' own header, status byte and
 * 512-byte buffer (evil.c). */
struct vdesc {
	u64 addr;
	u32 len;
	u16 flags, next;
};
#define VD_NEXT 1
#define VD_WRITE 2
#define VD_INDIRECT 4

static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }
static inline void mfence(void) { __asm__ volatile("mfence" ::: "memory"); }

static inline volatile struct vdesc *desc(const struct disk *d) { return (volatile struct vdesc *)(uptr)d->ctl; }
static inline u64 avail_addr(const struct disk *d) { return d->ctl + 16ull * d->qsize; }
static inline u64 used_addr(const struct disk *d) { return d->ctl + 0x1000; }
static inline u64 hdr_addr(const struct disk *d, unsigned s) { return d->ctl + 0x2000 + 16ull * s; }
static inline u64 status_addr(const struct disk *d, unsigned s) { return d->ctl + 0x2100 + s; }
static inline u64 idbuf_addr(const struct disk *d) { return d->ctl + 0x2200; }
static inline u64 evil_hdr_addr(const struct disk *d) { return d->ctl + 0x2300; }
static inline u64 evil_status_addr(const struct disk *d) { return d->ctl + 0x2310; }
static inline u64 evil_buf_addr(const struct disk *d) { return d->ctl + 0x2400; }
static inline volatile u16 *avail_flags(const struct disk *d) { return (volatile u16 *)(uptr)avail_addr(d); }
static inline volatile u16 *avail_idx(const struct disk *d) { return (volatile u16 *)(uptr)(avail_addr(d) + 2); }
static inline volatile u16 *avail_ring(const struct disk *d) { return (volatile u16 *)(uptr)(avail_addr(d) + 4); }
static inline volatile u16 *used_flags(const struct disk *d) { return (volatile u16 *)(uptr)used_addr(d); }
static inline volatile u16 *used_idx(const struct disk *d) { return (volatile u16 *)(uptr)(used_addr(d) + 2); }
static inline volatile u32 *used_ring(const struct disk *d) { return (volatile u32 *)(uptr)(used_addr(d) + 4); }
static inline u32 disk_rd(const struct disk *d, u32 reg) { return mmio_rd32(d->base + reg); }
static inline void disk_wr(const struct disk *d, u32 reg, u32 v) { mmio_wr32(d->base + reg, v); }

u64 run_clock(void);
void slot_submit(struct disk *d, unsigned s, u32 type, u64 sector, u32 bytes);
void slot_submit_at(struct disk *d, unsigned s, u32 type, u64 sector, u64 addr, u32 bytes);
void disk_kick(struct disk *d);
int disk_reap(struct disk *d); /* takes completions; slots that changed state */
int disk_free_slot(struct disk *d);
unsigned disk_lost_slots(const struct disk *d);
/* Waits for a completion, a timeout, or a lost slot coming back; 0 if none
 * came before `deadline` (run_clock), only checked when nothing is BUSY. */
int disk_wait(struct disk *d, u64 deadline);
void slot_release(struct disk *d, unsigned s);
static inline u8 *slot_buf(const struct disk *d, unsigned s) { return (u8 *)(uptr)(d->data + (u64)s * SLOT_BYTES); }
int disk_set_irq_mode(int on);
u32 disk_single(struct disk *d, u32 type, u64 sector, u64 addr, u32 bytes);
int disk_get_id(struct disk *d, u32 *status);
void disk_line(const struct disk *d, const char *prefix);
/* Resets the device and sets it up again (a driver's answer to
 * DEVICE_NEEDS_RESET); slots and ring indices start afresh. 0 on failure. */
int disk_reset(struct disk *d);
struct disk *disk_arg(const char *s); /* disk.c: `ERR no such disk` if bad */
const char *blk_status_name(u32 st, char *buf);

#endif
