/* Boot protocol parsing: PVH hvm_start_info and Linux boot_params. Both are
 * copied out right away because their memory (and the low memory around
 * them) is reused later, e.g. for the AP trampoline. */
#include "guest.h"

#define HVM_START_MAGIC 0x336ec578

static void copy_cmdline(struct bootinfo *bi, u64 pa)
{
	unsigned i = 0;
	if (pa && pa < (4ull << 30))
		for (; i < sizeof(bi->cmdline) - 1; i++) {
			char c = mem_rd8(pa + i);
			if (!c)
				break;
			bi->cmdline[i] = c;
		}
	bi->cmdline[i] = 0;
}

static void add_e820(struct bootinfo *bi, u64 addr, u64 size, u32 type)
{
	if (bi->nr_e820 >= MAX_E820)
		return;
	struct e820 *e = &bi->e820[bi->nr_e820++];
	e->addr = addr;
	e->size = size;
	e->type = type;
	if (type == 1)
		bi->ram_bytes += size;
}

static void parse_pvh(struct bootinfo *bi, u64 si)
{
	if (mem_rd32(si) != HVM_START_MAGIC)
		return;
	u32 version = mem_rd32(si + 4);
	copy_cmdline(bi, mem_rd64(si + 24));
	bi->rsdp = mem_rd64(si + 32);
	if (version >= 1) {
		u64 map = mem_rd64(si + 40);
		u32 n = mem_rd32(si + 48);
		for (u32 i = 0; map && i < n && i < MAX_E820; i++) {
			u64 e = map + 24ull * i;
			add_e820(bi, mem_rd64(e), mem_rd64(e + 8), mem_rd32(e + 16));
		}
	}
	bi->valid = 1;
}

static void parse_bzimage(struct bootinfo *bi, u64 bp)
{
	u64 cmd = mem_rd32(bp + 0x228) | ((u64)mem_rd32(bp + 0x0c8) << 32);
	copy_cmdline(bi, cmd);
	bi->rsdp = mem_rd64(bp + 0x070);
	u32 n = mem_rd8(bp + 0x1e8);
	for (u32 i = 0; i < n && i < 128; i++) {
		u64 e = bp + 0x2d0 + 20ull * i;
		add_e820(bi, mem_rd64(e), mem_rd64(e + 8), mem_rd32(e + 16));
	}
	bi->valid = 1;
}

void boot_parse(struct bootinfo *bi, int protocol, u64 ptr)
{
	memset(bi, 0, sizeof(*bi));
	bi->protocol = protocol;
	if (!ptr || ptr >= (4ull << 30))
		return;
	if (protocol == BOOT_PVH)
		parse_pvh(bi, ptr);
	else
		parse_bzimage(bi, ptr);
}

/* 1 if [start, end) is RAM (possibly over adjacent entries) below 4 GiB,
 * the range the page tables map. */
int ram_contains(const struct bootinfo *bi, u64 start, u64 end)
{
	if (end <= start || end > (4ull << 30))
		return 0;
	u64 cur = start;
	while (cur < end) {
		u64 next = cur;
		for (unsigned i = 0; i < bi->nr_e820; i++) {
			const struct e820 *e = &bi->e820[i];
			if (e->type == 1 && cur >= e->addr && cur < e->addr + e->size)
				next = e->addr + e->size;
		}
		if (next == cur)
			return 0;
		cur = next;
	}
	return 1;
}
