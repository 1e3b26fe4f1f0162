/* Firmware tables: ACPI (RSDP -> RSDT/XSDT -> MADT, FADT) and the Intel MP
 * table, read in place (identity mapped, user accessible). Only what the
 * guest needs: the CPU count, the IOAPICs, the ISA IRQ overrides (serial,
 * disks), the reset / sleep registers and where the DSDT is (virtio.c
 * scans it for virtio-mmio devices). */
#include "guest.h"

static const u64 MEM_LIMIT = 4ull << 30;

static int sum8(u64 p, u32 n)
{
	u8 s = 0;
	for (u32 i = 0; i < n; i++)
		s += mem_rd8(p + i);
	return s == 0;
}

static int sig_is(u64 p, const char *sig, unsigned n)
{
	return memcmp((const void *)(uptr)p, sig, n) == 0;
}

static u64 find_rsdp_in(u64 start, u64 end)
{
	for (u64 p = start; p + 20 <= end; p += 16)
		if (sig_is(p, "RSD PTR ", 8) && sum8(p, 20))
			return p;
	return 0;
}

static u64 find_rsdp(u64 hint)
{
	if (hint && hint < MEM_LIMIT && sig_is(hint, "RSD PTR ", 8))
		return hint;
	u64 ebda = (u64)mem_rd16(0x40e) << 4;
	u64 p = 0;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		p = find_rsdp_in(ebda, ebda + 1024);
	if (!p)
		p = find_rsdp_in(0xe0000, 0x100000);
	return p;
}

static void parse_gas(u64 p, struct gas *g)
{
	g->space = mem_rd8(p);
	g->width = mem_rd8(p + 1);
	g->offset = mem_rd8(p + 2);
	g->access = mem_rd8(p + 3);
	g->addr = mem_rd64(p + 4);
}

static void parse_madt(struct platform *pf, u64 t, u32 len)
{
	for (u64 p = t + 44; p + 2 <= t + len;) {
		u8 type = mem_rd8(p), elen = mem_rd8(p + 1);
		if (elen < 2 || p + elen > t + len)
			break;
		if (type == 0 && elen >= 8 && (mem_rd32(p + 4) & 1))
			pf->madt_cpus++; /* processor local APIC, enabled */
		else if (type == 9 && elen >= 16 && (mem_rd32(p + 8) & 1))
			pf->madt_cpus++; /* processor local x2APIC, enabled */
		else if (type == 1 && elen >= 12) {
			if (!pf->ioapic) {
				pf->ioapic = mem_rd32(p + 4);
				pf->ioapic_gsi_base = mem_rd32(p + 8);
			}
			if (pf->nr_ioapics < MAX_IOAPICS) {
				pf->ioapics[pf->nr_ioapics].addr = mem_rd32(p + 4);
				pf->ioapics[pf->nr_ioapics].gsi_base = mem_rd32(p + 8);
				pf->nr_ioapics++;
			}
		} else if (type == 2 && elen >= 10 && mem_rd8(p + 3) < 16) {
			u8 src = mem_rd8(p + 3); /* interrupt source override for an ISA IRQ */
			pf->isa_gsi[src] = mem_rd32(p + 4);
			pf->isa_flags[src] = mem_rd16(p + 8);
			if (src == 4) {
				pf->serial_gsi = pf->isa_gsi[4];
				pf->serial_flags = pf->isa_flags[4];
			}
		}
		p += elen;
	}
}

static void parse_fadt(struct platform *pf, u64 t, u32 len)
{
	if (len >= 44)
		pf->dsdt = mem_rd32(t + 40);
	if (len >= 148 && mem_rd64(t + 140) && mem_rd64(t + 140) < MEM_LIMIT)
		pf->dsdt = mem_rd64(t + 140); /* X_DSDT */
	if (len >= 68)
		pf->pm1a_cnt = mem_rd32(t + 64);
	if (len >= 129 && (mem_rd32(t + 112) & (1u << 10))) { /* RESET_REG_SUP */
		parse_gas(t + 116, &pf->reset_reg);
		pf->reset_value = mem_rd8(t + 128);
		pf->has_reset = pf->reset_reg.addr != 0;
	}
	if (len >= 256) {
		parse_gas(t + 244, &pf->sleep_ctl);
		pf->has_sleep = pf->sleep_ctl.addr != 0;
	}
}

static void parse_acpi(struct platform *pf, u64 rsdp)
{
	u8 rev = mem_rd8(rsdp + 15);
	u64 sdt;
	unsigned esz;
	if (rev >= 2 && mem_rd64(rsdp + 24)) {
		sdt = mem_rd64(rsdp + 24);
		esz = 8;
	} else {
		sdt = mem_rd32(rsdp + 16);
		esz = 4;
	}
	if (!sdt || sdt >= MEM_LIMIT)
		return;
	u32 len = mem_rd32(sdt + 4);
	if (len < 36 || len > (1u << 20))
		return;
	for (u64 p = sdt + 36; p + esz <= sdt + len; p += esz) {
		u64 t = esz == 8 ? mem_rd64(p) : mem_rd32(p);
		if (!t || t >= MEM_LIMIT)
			continue;
		u32 tlen = mem_rd32(t + 4);
		if (tlen < 36 || tlen > (1u << 20))
			continue;
		if (sig_is(t, "APIC", 4))
			parse_madt(pf, t, tlen);
		else if (sig_is(t, "FACP", 4))
			parse_fadt(pf, t, tlen);
	}
}

static u64 find_mp_in(u64 start, u64 end)
{
	for (u64 p = start; p + 16 <= end; p += 16)
		if (sig_is(p, "_MP_", 4) && sum8(p, 16))
			return p;
	return 0;
}

static unsigned count_mp_cpus(void)
{
	u64 ebda = (u64)mem_rd16(0x40e) << 4;
	u64 fp = 0;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		fp = find_mp_in(ebda, ebda + 1024);
	if (!fp)
		fp = find_mp_in(0x9fc00, 0xa0000);
	if (!fp)
		fp = find_mp_in(0xf0000, 0x100000);
	if (!fp)
		return 0;
	u64 ct = mem_rd32(fp + 4);
	if (!ct || ct >= MEM_LIMIT || !sig_is(ct, "PCMP", 4))
		return 0;
	u32 len = mem_rd16(ct + 4), n = mem_rd16(ct + 34);
	unsigned cpus = 0;
	u64 p = ct + 44;
	for (u32 i = 0; i < n && p < ct + len; i++) {
		u8 type = mem_rd8(p);
		if (type == 0) {
			if (mem_rd8(p + 3) & 1)
				cpus++;
			p += 20;
		} else if (type <= 4) {
			p += 8;
		} else {
			break; /* unknown entry: its length is unknown too */
		}
	}
	return cpus;
}

void platform_scan(struct platform *pf, u64 rsdp_hint)
{
	memset(pf, 0, sizeof(*pf));
	pf->serial_gsi = 4;
	for (unsigned i = 0; i < 16; i++)
		pf->isa_gsi[i] = i;
	u64 rsdp = find_rsdp(rsdp_hint);
	if (rsdp) {
		pf->acpi = 1;
		parse_acpi(pf, rsdp);
	}
	if (!pf->madt_cpus)
		pf->mp_cpus = count_mp_cpus();
	pf->described = pf->madt_cpus ? pf->madt_cpus : pf->mp_cpus ? pf->mp_cpus : 1;
}

static unsigned gas_bytes(const struct gas *g)
{
	if (g->access >= 1 && g->access <= 4)
		return 1u << (g->access - 1);
	return g->width > 8 ? (g->width + 7u) / 8 : 1;
}

void gas_write(const struct gas *g, u64 v)
{
	unsigned n = gas_bytes(g);
	if (g->space == 0 && g->addr < MEM_LIMIT) {
		switch (n) {
		case 2: *(volatile u16 *)(uptr)g->addr = v; break;
		case 4: *(volatile u32 *)(uptr)g->addr = v; break;
		case 8: *(volatile u64 *)(uptr)g->addr = v; break;
		default: *(volatile u8 *)(uptr)g->addr = v; break;
		}
	} else if (g->space == 1 && g->addr < 0x10000) {
		switch (n) {
		case 2: outw(g->addr, v); break;
		case 4: outl(g->addr, v); break;
		default: outb(g->addr, v); break;
		}
	}
}
