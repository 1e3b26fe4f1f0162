/* vmmd test guest, CPL3 part: boot information, CPU bring-up, the readiness
 * line and the serial command loop. See README.md for the protocol. */
#include "guest.h"

static struct bootinfo bi;
static struct platform pf;
static struct clock clk;
static u64 tsc_cmain, tsc_smp, tsc_disk, tsc_ready; /* boot stages, for diag */

static struct {
	u64 period; /* TSC ticks, 0 = off */
	u64 last, n;
} hb;

static void ready_line(const char *prefix)
{
	struct line l;
	l_init(&l);
	l_str(&l, prefix);
	l_str(&l, "vmmd-testguest boot=");
	l_str(&l, bi.protocol == BOOT_PVH ? "pvh" : "bzimage");
	l_str(&l, " cpus=");
	l_u64(&l, cpus_online());
	l_str(&l, " mem=");
	l_u64(&l, (bi.ram_bytes + (1 << 20) - 1) >> 20);
	l_str(&l, "M ram_kib=");
	l_u64(&l, bi.ram_bytes >> 10);
	l_str(&l, " e820=");
	l_u64(&l, bi.nr_e820);
	l_str(&l, " cmdline=\"");
	l_str(&l, bi.cmdline);
	l_str(&l, "\" disks=");
	l_u64(&l, disk_count());
	l_emit(&l);
}

static void cmd_hb(char **argv, int argc)
{
	u64 ms;
	if (argc != 2 || !parse_u64(argv[1], &ms) || ms > 86400000ull) {
		puts_line("ERR usage: hb <ms>");
		return;
	}
	hb.period = ms_to_tsc(&clk, ms);
	hb.last = rdtsc();
	struct line l;
	l_init(&l);
	l_str(&l, "OK hb ");
	l_u64(&l, ms);
	l_emit(&l);
}

static void heartbeat(u64 now);

void heartbeat_tick(void) { heartbeat(rdtsc()); }

static void heartbeat(u64 now)
{
	if (!hb.period || now - hb.last < hb.period)
		return;
	/* Keep the cadence, but after a long pause (the TSC jumped) restart
	 * from now: the next line is still n+1, with no burst. */
	if (now - hb.last < 2 * hb.period)
		hb.last += hb.period;
	else
		hb.last = now;
	struct line l;
	l_init(&l);
	l_str(&l, "HB ");
	l_u64(&l, ++hb.n);
	l_emit(&l);
}

static void cmd_poweroff(void)
{
	puts_line("GUEST-POWEROFF");
	if (pf.has_sleep) {
		gas_write(&pf.sleep_ctl, (5 << 2) | (1 << 5)); /* SLP_TYP 5 (S5), SLP_EN */
		tsc_delay(&clk, 100000);
	}
	/* SLP_EN with SLP_TYP 0, which is S5 on QEMU's PIIX4 and ICH9 */
	if (pf.pm1a_cnt && pf.pm1a_cnt != 0x604 && pf.pm1a_cnt < 0x10000) {
		outw(pf.pm1a_cnt, 0x2000);
		tsc_delay(&clk, 100000);
	}
	outw(0x604, 0x2000);
	tsc_delay(&clk, 100000);
	sys_park();
}

static void cmd_reset(int triple_only)
{
	puts_line("GUEST-RESET");
	if (triple_only)
		sys_triple_fault();
	if (pf.has_reset) {
		gas_write(&pf.reset_reg, pf.reset_value);
		tsc_delay(&clk, 100000);
	}
	outb(0xcf9, 0x06);
	tsc_delay(&clk, 50000);
	outb(0x64, 0xfe);
	tsc_delay(&clk, 50000);
	sys_triple_fault();
}

static void cmd_diag(void)
{
	struct line l;
	l_init(&l);
	l_str(&l, "DIAG tsc_khz=");
	l_u64(&l, clk.tsc_khz);
	l_str(&l, " tsc_source=");
	l_str(&l, clk.source);
	l_str(&l, " idle=");
	l_str(&l, clk.idle_hlt ? "hlt" : "spin");
	l_str(&l, " lapic_period=");
	l_u64(&l, clk.lapic_period);
	l_str(&l, " timer_irqs=");
	l_u64(&l, timer_ticks);
	l_str(&l, " serial_irqs=");
	l_u64(&l, serial_irqs);
	l_str(&l, " acpi=");
	l_u64(&l, pf.acpi);
	l_str(&l, " madt_cpus=");
	l_u64(&l, pf.madt_cpus);
	l_str(&l, " mp_cpus=");
	l_u64(&l, pf.mp_cpus);
	l_str(&l, " reset_reg=");
	l_hex(&l, pf.has_reset ? pf.reset_reg.addr : 0);
	l_str(&l, " sleep_reg=");
	l_hex(&l, pf.has_sleep ? pf.sleep_ctl.addr : 0);
	l_str(&l, " init_us=");
	l_u64(&l, (tsc_smp - tsc_cmain) * 1000 / clk.tsc_khz);
	l_str(&l, " smp_us=");
	l_u64(&l, (tsc_disk - tsc_smp) * 1000 / clk.tsc_khz);
	l_str(&l, " disk_us=");
	l_u64(&l, (tsc_ready - tsc_disk) * 1000 / clk.tsc_khz);
	l_str(&l, " disk_irqs=");
	l_u64(&l, disk_irqs);
	l_emit(&l);
	l_str(&l, "DIAG ap_arrival_us");
	for (unsigned i = 0; i < MAX_AP_APICID; i++) {
		if (!ap_arrival[i])
			continue;
		l_chr(&l, ' ');
		l_u64(&l, i);
		l_chr(&l, ':');
		l_u64(&l, (ap_arrival[i] - tsc_sipi) * 1000 / clk.tsc_khz);
	}
	l_emit(&l);
}

static void cmd_e820(void)
{
	for (unsigned i = 0; i < bi.nr_e820; i++) {
		struct line l;
		l_init(&l);
		l_str(&l, "E820 ");
		l_hex(&l, bi.e820[i].addr);
		l_chr(&l, ' ');
		l_hex(&l, bi.e820[i].size);
		l_chr(&l, ' ');
		l_u64(&l, bi.e820[i].type);
		l_emit(&l);
	}
	puts_line("OK e820");
}

/* "lines <n>": n numbered lines, for console throughput measurements. */
static void cmd_lines(char **argv, int argc)
{
	u64 n;
	if (argc != 2 || !parse_u64(argv[1], &n) || n > 1000000) {
		puts_line("ERR usage: lines <n>");
		return;
	}
	for (u64 i = 1; i <= n; i++) {
		struct line l;
		l_init(&l);
		l_str(&l, "LINE ");
		l_u64(&l, i);
		l_str(&l, " 0123456789abcdefghijklmnopqrstuvwxyz");
		l_emit(&l);
	}
	puts_line("OK lines");
}

static void __attribute__((noinline)) crash(void) { __asm__ volatile("ud2"); }

/* emufail: an AES-NI load from the MMIO hole. The access leaves the guest
 * and KVM's instruction emulator, which has no AES instructions, gives up:
 * the VMM sees KVM_EXIT_INTERNAL_ERROR. Tests use it to check that vmmd
 * stops the VM in internal-error instead of crashing. xmm0 is not used by
 * the rest of the guest (built with -mgeneral-regs-only). */
static void __attribute__((noinline)) emufail(void)
{
	__asm__ volatile("aesenc (%0), %%xmm0" : : "r"(0xD0000000UL) : "memory");
	puts_line("GUEST-EMUFAIL survived");
}

static void dispatch(char *s)
{
	char *argv[8];
	int argc = 0;
	while (*s && argc < (int)ARRAY_SIZE(argv)) {
		while (*s == ' ' || *s == '\t')
			*s++ = 0;
		if (!*s)
			break;
		argv[argc++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
	}
	if (!argc)
		return;
	const char *c = argv[0];
	struct line l;
	l_init(&l);
	if (streq(c, "ping")) {
		puts_line("PONG");
	} else if (streq(c, "info")) {
		ready_line("INFO ");
	} else if (streq(c, "hb")) {
		cmd_hb(argv, argc);
	} else if (streq(c, "mem")) {
		work_cmd_mem(&bi, argv, argc);
	} else if (streq(c, "disk")) {
		disk_cmd(argv, argc);
	} else if (streq(c, "evil")) {
		evil_cmd(&bi, argv, argc);
	} else if (streq(c, "dirty")) {
		work_cmd_dirty(&bi, argv, argc);
	} else if (streq(c, "cpus")) {
		l_str(&l, "CPUS online=");
		l_u64(&l, cpus_online());
		l_str(&l, " described=");
		l_u64(&l, pf.described);
		l_emit(&l);
	} else if (streq(c, "poweroff")) {
		cmd_poweroff();
	} else if (streq(c, "reset") && argc == 1) {
		cmd_reset(0);
	} else if (streq(c, "reset") && argc == 2 && streq(argv[1], "triple")) {
		cmd_reset(1);
	} else if (streq(c, "crash")) {
		crash();
	} else if (streq(c, "emufail")) {
		puts_line("GUEST-EMUFAIL");
		emufail();
	} else if (streq(c, "diag")) {
		cmd_diag();
	} else if (streq(c, "e820")) {
		cmd_e820();
	} else if (streq(c, "cpuid") || streq(c, "native-cpuid")) {
		u64 leaf, sub = 0;
		u32 r[4];
		if (argc < 2 || argc > 3 || !parse_u64(argv[1], &leaf) || (argc == 3 && !parse_u64(argv[2], &sub))) {
			puts_line("ERR usage: cpuid <leaf> [subleaf]");
			return;
		}
		if (c[0] == 'n')
			native_cpuid(leaf, sub, &r[0], &r[1], &r[2], &r[3]);
		else
			cpuid(leaf, sub, &r[0], &r[1], &r[2], &r[3]);
		l_str(&l, "CPUID");
		for (int i = 0; i < 4; i++) {
			l_chr(&l, ' ');
			l_hex(&l, r[i]);
		}
		l_emit(&l);
	} else if (streq(c, "lines")) {
		cmd_lines(argv, argc);
	} else if (streq(c, "echo")) {
		l_str(&l, "ECHO");
		for (int i = 1; i < argc; i++) {
			l_chr(&l, ' ');
			l_str(&l, argv[i]);
		}
		l_emit(&l);
	} else {
		l_str(&l, "ERR unknown command: ");
		l_str(&l, c);
		l_emit(&l);
	}
}

static void __attribute__((noreturn)) main_loop(void)
{
	for (;;) {
		const char *cmd;
		while ((cmd = console_poll()) != NULL) {
			char buf[256];
			memcpy(buf, cmd, strlen(cmd) + 1);
			dispatch(buf);
		}
		u64 now = rdtsc();
		heartbeat(now);
		if (work_step(&clk, now + clk.tsc_khz))
			continue; /* busy: poll the console again in ~1 ms */
		if (clk.idle_hlt) {
			sys_idle(); /* woken by the 10 ms LAPIC timer or COM1 */
		} else {
			u64 t = rdtsc();
			while (rdtsc() - t < clk.tsc_khz)
				cpu_relax();
		}
	}
}

void __attribute__((noreturn)) cmain(u64 protocol, u64 ptr)
{
	tsc_cmain = rdtsc();
	idt_init();
	boot_parse(&bi, (int)protocol, ptr);
	platform_scan(&pf, bi.rsdp);
	clock_init(&clk);
	work_init(&clk);
	smp_prepare();
	irq_init(&clk, &pf);
	tsc_smp = rdtsc();
	unsigned online = smp_boot(&clk, pf.described, pf.madt_cpus || pf.mp_cpus);
	if (!bi.valid)
		puts_line("GUEST-WARN no boot information");
	if (clk.source[0] == 'a')
		puts_line("GUEST-WARN tsc frequency unknown, assuming 2 GHz");
	if (online != pf.described) {
		struct line l;
		l_init(&l);
		l_str(&l, "GUEST-WARN cpus described=");
		l_u64(&l, pf.described);
		l_str(&l, " online=");
		l_u64(&l, online);
		l_emit(&l);
	}
	tsc_disk = rdtsc();
	disk_init(&bi, &pf, &clk);
	disk_print_all();
	outb(0x80, 0x10);
	tsc_ready = rdtsc();
	ready_line("GUEST-READY ");
	main_loop();
}
