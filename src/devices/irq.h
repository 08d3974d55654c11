/* SPDX-License-Identifier: MIT */
/*
 * irq.h - how a device drives an interrupt line without knowing about KVM.
 *
 * The machine hands each device a struct irq_line; the device calls
 * irq_line_set(line, 1) while its interrupt is asserted and
 * irq_line_set(line, 0) when it deasserts (level semantics, as a PC device's
 * IRQ output).  Raising an already-raised line is harmless.
 */
#ifndef VISOR_DEVICES_IRQ_H
#define VISOR_DEVICES_IRQ_H

#include <stdint.h>

struct irq_line {
	void (*set_level)(void *ctx, uint32_t gsi, int level);
	void *ctx;
	uint32_t gsi;
};

static inline void irq_line_set(const struct irq_line *line, int level)
{
	if (line && line->set_level)
		line->set_level(line->ctx, line->gsi, level);
}

#endif
