/* COM1 console: lines out with one `out` per byte to THR (the VMMs never
 * back-pressure, so LSR is not polled; `rep outsb` measured no faster on
 * PVM, and a plain `out` keeps every exit at count 1), polled line input. */
#include "guest.h"

#define COM1 0x3f8
#define UART_RBR 0
#define UART_IER 1
#define UART_FCR 2
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DR 0x01

void l_init(struct line *l) { l->n = 0; }

void l_chr(struct line *l, char c)
{
	if (l->n < LINE_MAX - 1) /* room for the '\n' */
		l->b[l->n++] = c;
}

void l_strn(struct line *l, const char *s, unsigned n)
{
	for (unsigned i = 0; i < n && s[i]; i++)
		l_chr(l, s[i]);
}

void l_str(struct line *l, const char *s)
{
	while (*s)
		l_chr(l, *s++);
}

void l_u64(struct line *l, u64 v)
{
	char t[24];
	int i = 0;
	do {
		t[i++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (i)
		l_chr(l, t[--i]);
}

void l_hex(struct line *l, u64 v)
{
	static const char dig[] = "0123456789abcdef";
	int shift = 60;
	l_str(l, "0x");
	while (shift > 0 && !((v >> shift) & 15))
		shift -= 4;
	for (; shift >= 0; shift -= 4)
		l_chr(l, dig[(v >> shift) & 15]);
}

static void serial_write(const char *p, u64 n)
{
	for (u64 i = 0; i < n; i++)
		outb(COM1, p[i]);
}

void l_emit(struct line *l)
{
	l->b[l->n++] = '\n';
	serial_write(l->b, l->n);
	l->n = 0;
}

void puts_line(const char *s)
{
	struct line l;
	l_init(&l);
	l_str(&l, s);
	l_emit(&l);
}

/* FIFO on, OUT2 (routes the IRQ on PC hardware), interrupt on received data. */
void console_init_irq(void)
{
	outb(COM1 + UART_FCR, 0x07);
	outb(COM1 + UART_MCR, 0x0b);
	outb(COM1 + UART_IER, 0x01);
}

static char inbuf[256];
static unsigned inlen;
static int overflow;
static char ready[256];

const char *console_poll(void)
{
	while (inb(COM1 + UART_LSR) & LSR_DR) {
		char c = inb(COM1 + UART_RBR);
		if (c == '\r' || c == '\n') {
			if (overflow) {
				overflow = 0;
				inlen = 0;
				puts_line("ERR line too long");
				continue;
			}
			if (!inlen)
				continue;
			memcpy(ready, inbuf, inlen);
			ready[inlen] = 0;
			inlen = 0;
			return ready;
		}
		if (inlen < sizeof(inbuf) - 1)
			inbuf[inlen++] = c;
		else
			overflow = 1;
	}
	return NULL;
}
