/* SPDX-License-Identifier: MIT */
#include "vm_state.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../../util/str.h"
#include "layout.h"

_Static_assert(sizeof(struct kvm_pic_state) == 16, "PIC state");
_Static_assert(KVM_IOAPIC_NUM_PINS == IOAPIC_NUM_PINS, "IOAPIC pins");
_Static_assert(sizeof(((struct kvm_pit_state2 *)0)->reserved) == 9 * 4, "PIT reserved");

#define PIT_FLAGS_KNOWN (KVM_PIT_FLAGS_HPET_LEGACY | KVM_PIT_FLAGS_SPEAKER_DATA_ON)
#define CLOCK_FLAGS_KNOWN (KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC)
#define PIT_COUNT_MAX 0x10000 /* a count of 0 is loaded as 65536 */
#define PIT_MODE_UNSET 0xff   /* KVM's mode of a channel never programmed */
#define RW_STATE_MAX 4        /* LSB, MSB, WORD0, WORD1 (i8254) */

static const char *const pic_names[2] = {"pic master", "pic slave"};

/* -EINVAL and "vm: <message>" */
__attribute__((format(printf, 3, 4))) static int refuse(char *err, size_t errlen,
							const char *fmt, ...)
{
	char msg[224];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(err, errlen, -EINVAL, "%s: %s", X86_VM_STATE_ID, msg);
}

static int sys_fail(char *err, size_t errlen, const char *what)
{
	int e = errno ? errno : EIO;
	return err_set(err, errlen, -e, "%s: %s failed: %s", X86_VM_STATE_ID, what, strerror(e));
}

/* ---- validation ---------------------------------------------------------- */

static int check_pic(const struct kvm_pic_state *p, const char *name, char *err, size_t errlen)
{
	if (p->priority_add > 7)
		return refuse(err, errlen, "%s: priority_add %u exceeds 7", name, p->priority_add);
	if (p->irq_base & 7)
		return refuse(err, errlen, "%s: irq_base 0x%02x is not a multiple of 8", name,
			      p->irq_base);
	if (p->init_state > 3)
		return refuse(err, errlen, "%s: init_state %u exceeds 3", name, p->init_state);
	const struct {
		const char *n;
		uint8_t v;
	} bools[] = {
		{"read_reg_select", p->read_reg_select},
		{"poll", p->poll},
		{"special_mask", p->special_mask},
		{"auto_eoi", p->auto_eoi},
		{"rotate_on_auto_eoi", p->rotate_on_auto_eoi},
		{"special_fully_nested_mode", p->special_fully_nested_mode},
		{"init4", p->init4},
	};
	for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++)
		if (bools[i].v > 1)
			return refuse(err, errlen, "%s: %s is %u, must be 0 or 1", name, bools[i].n,
				      bools[i].v);
	if (p->elcr & ~p->elcr_mask)
		return refuse(err, errlen, "%s: elcr 0x%02x outside elcr_mask 0x%02x", name, p->elcr,
			      p->elcr_mask);
	return 0;
}

int x86_vm_state_validate(const struct x86_vm_state *s, char *err, size_t errlen)
{
	for (int i = 0; i < 2; i++) {
		int rc = check_pic(&s->pic[i], pic_names[i], err, errlen);
		if (rc)
			return rc;
	}
	const struct kvm_ioapic_state *io = &s->ioapic;
	if (io->base_address != GPA_IOAPIC)
		return refuse(err, errlen, "ioapic: base address 0x%llx is not 0x%llx",
			      (unsigned long long)io->base_address, (unsigned long long)GPA_IOAPIC);
	if (io->ioregsel > 0xff)
		return refuse(err, errlen, "ioapic: ioregsel 0x%" PRIx32 " exceeds 0xff", io->ioregsel);
	if (io->id > 15)
		return refuse(err, errlen, "ioapic: id %" PRIu32 " exceeds 15", io->id);
	if (io->irr >> KVM_IOAPIC_NUM_PINS)
		return refuse(err, errlen, "ioapic: irr 0x%" PRIx32 " names pins beyond %d", io->irr,
			      KVM_IOAPIC_NUM_PINS - 1);
	for (int i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &s->pit.channels[i];
		const struct {
			const char *n;
			unsigned v, max;
		} f[] = {
			{"count", c->count, PIT_COUNT_MAX},
			{"count_latched", c->count_latched, 3},
			{"status_latched", c->status_latched, 1},
			{"read_state", c->read_state, RW_STATE_MAX},
			{"write_state", c->write_state, RW_STATE_MAX},
			{"rw_mode", c->rw_mode, 3},
			{"mode", c->mode == PIT_MODE_UNSET ? 0 : c->mode, 7},
			{"bcd", c->bcd, 1},
			{"gate", c->gate, 1},
		};
		for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++)
			if (f[k].v > f[k].max)
				return refuse(err, errlen, "pit channel %d: %s %u exceeds %u", i,
					      f[k].n, f[k].v, f[k].max);
	}
	if (s->pit.flags & ~(uint32_t)PIT_FLAGS_KNOWN)
		return refuse(err, errlen, "pit: flags 0x%" PRIx32 " has unknown bits", s->pit.flags);
	for (int i = 0; i < 9; i++)
		if (s->pit.reserved[i])
			return refuse(err, errlen, "pit: reserved[%d] is 0x%" PRIx32 ", must be 0", i,
				      s->pit.reserved[i]);
	if (s->clock_flags & ~(uint32_t)CLOCK_FLAGS_KNOWN)
		return refuse(err, errlen, "kvmclock: flags 0x%" PRIx32 " has unknown bits",
			      s->clock_flags);
	if (!(s->clock_flags & KVM_CLOCK_REALTIME) && s->clock_realtime)
		return refuse(err, errlen, "kvmclock: realtime set without KVM_CLOCK_REALTIME");
	if (!(s->clock_flags & KVM_CLOCK_HOST_TSC) && s->clock_host_tsc)
		return refuse(err, errlen, "kvmclock: host_tsc set without KVM_CLOCK_HOST_TSC");
	return 0;
}

/* ---- encoding ------------------------------------------------------------ */

void x86_vm_state_encode(const struct x86_vm_state *s, struct snap_writer *w)
{
	for (int i = 0; i < 2; i++) {
		const struct kvm_pic_state *p = &s->pic[i];
		snap_put_u8(w, p->last_irr);
		snap_put_u8(w, p->irr);
		snap_put_u8(w, p->imr);
		snap_put_u8(w, p->isr);
		snap_put_u8(w, p->priority_add);
		snap_put_u8(w, p->irq_base);
		snap_put_u8(w, p->read_reg_select);
		snap_put_u8(w, p->poll);
		snap_put_u8(w, p->special_mask);
		snap_put_u8(w, p->init_state);
		snap_put_u8(w, p->auto_eoi);
		snap_put_u8(w, p->rotate_on_auto_eoi);
		snap_put_u8(w, p->special_fully_nested_mode);
		snap_put_u8(w, p->init4);
		snap_put_u8(w, p->elcr);
		snap_put_u8(w, p->elcr_mask);
	}
	const struct kvm_ioapic_state *io = &s->ioapic;
	snap_put_u64(w, io->base_address);
	snap_put_u32(w, io->ioregsel);
	snap_put_u32(w, io->id);
	snap_put_u32(w, io->irr);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		snap_put_u64(w, io->redirtbl[i].bits);
	for (int i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &s->pit.channels[i];
		snap_put_u32(w, c->count);
		snap_put_u16(w, c->latched_count);
		snap_put_u8(w, c->count_latched);
		snap_put_u8(w, c->status_latched);
		snap_put_u8(w, c->status);
		snap_put_u8(w, c->read_state);
		snap_put_u8(w, c->write_state);
		snap_put_u8(w, c->write_latch);
		snap_put_u8(w, c->rw_mode);
		snap_put_u8(w, c->mode);
		snap_put_u8(w, c->bcd);
		snap_put_u8(w, c->gate);
		snap_put_u64(w, (uint64_t)c->count_load_time);
	}
	snap_put_u32(w, s->pit.flags);
	for (int i = 0; i < 9; i++)
		snap_put_u32(w, s->pit.reserved[i]);
	snap_put_u64(w, s->clock);
	snap_put_u32(w, s->clock_flags);
	snap_put_u64(w, s->clock_realtime);
	snap_put_u64(w, s->clock_host_tsc);
}

int x86_vm_state_decode(struct snap_cursor *c, uint32_t version, struct x86_vm_state *s,
			char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (err && errlen)
		err[0] = 0;
	if (version != X86_VM_STATE_VERSION)
		return err_set(err, errlen, -EINVAL,
			       "%s: state version %" PRIu32 " (this visor reads %d)", X86_VM_STATE_ID,
			       version, X86_VM_STATE_VERSION);
	for (int i = 0; i < 2; i++) {
		struct kvm_pic_state *p = &s->pic[i];
		p->last_irr = snap_get_u8(c);
		p->irr = snap_get_u8(c);
		p->imr = snap_get_u8(c);
		p->isr = snap_get_u8(c);
		p->priority_add = snap_get_u8(c);
		p->irq_base = snap_get_u8(c);
		p->read_reg_select = snap_get_u8(c);
		p->poll = snap_get_u8(c);
		p->special_mask = snap_get_u8(c);
		p->init_state = snap_get_u8(c);
		p->auto_eoi = snap_get_u8(c);
		p->rotate_on_auto_eoi = snap_get_u8(c);
		p->special_fully_nested_mode = snap_get_u8(c);
		p->init4 = snap_get_u8(c);
		p->elcr = snap_get_u8(c);
		p->elcr_mask = snap_get_u8(c);
	}
	struct kvm_ioapic_state *io = &s->ioapic;
	io->base_address = snap_get_u64(c);
	io->ioregsel = snap_get_u32(c);
	io->id = snap_get_u32(c);
	io->irr = snap_get_u32(c);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		io->redirtbl[i].bits = snap_get_u64(c);
	for (int i = 0; i < 3; i++) {
		struct kvm_pit_channel_state *ch = &s->pit.channels[i];
		ch->count = snap_get_u32(c);
		ch->latched_count = snap_get_u16(c);
		ch->count_latched = snap_get_u8(c);
		ch->status_latched = snap_get_u8(c);
		ch->status = snap_get_u8(c);
		ch->read_state = snap_get_u8(c);
		ch->write_state = snap_get_u8(c);
		ch->write_latch = snap_get_u8(c);
		ch->rw_mode = snap_get_u8(c);
		ch->mode = snap_get_u8(c);
		ch->bcd = snap_get_u8(c);
		ch->gate = snap_get_u8(c);
		ch->count_load_time = (int64_t)snap_get_u64(c);
	}
	s->pit.flags = snap_get_u32(c);
	for (int i = 0; i < 9; i++)
		s->pit.reserved[i] = snap_get_u32(c);
	s->clock = snap_get_u64(c);
	s->clock_flags = snap_get_u32(c);
	s->clock_realtime = snap_get_u64(c);
	s->clock_host_tsc = snap_get_u64(c);
	int rc = snap_cursor_done(c, X86_VM_STATE_ID, err, errlen);
	if (rc)
		return rc;
	return x86_vm_state_validate(s, err, errlen);
}

/* ---- KVM ----------------------------------------------------------------- */

int x86_vm_state_get(struct kvm *k, struct x86_vm_state *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (err && errlen)
		err[0] = 0;
	static const uint32_t chips[3] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
					  KVM_IRQCHIP_IOAPIC};
	for (int i = 0; i < 3; i++) {
		struct kvm_irqchip ic;
		memset(&ic, 0, sizeof(ic));
		ic.chip_id = chips[i];
		if (ioctl(k->vm_fd, KVM_GET_IRQCHIP, &ic) < 0)
			return sys_fail(err, errlen, i < 2 ? "KVM_GET_IRQCHIP (PIC)" :
							     "KVM_GET_IRQCHIP (IOAPIC)");
		if (i < 2)
			s->pic[i] = ic.chip.pic;
		else
			s->ioapic = ic.chip.ioapic;
	}
	s->ioapic.pad = 0;
	if (ioctl(k->vm_fd, KVM_GET_PIT2, &s->pit) < 0)
		return sys_fail(err, errlen, "KVM_GET_PIT2");
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	if (ioctl(k->vm_fd, KVM_GET_CLOCK, &cd) < 0)
		return sys_fail(err, errlen, "KVM_GET_CLOCK");
	s->clock = cd.clock;
	s->clock_flags = cd.flags;
	s->clock_realtime = (cd.flags & KVM_CLOCK_REALTIME) ? cd.realtime : 0;
	s->clock_host_tsc = (cd.flags & KVM_CLOCK_HOST_TSC) ? cd.host_tsc : 0;
	int r = x86_vm_state_validate(s, err, errlen);
	if (r && err && errlen) {
		size_t l = strlen(err);
		snprintf(err + l, errlen - l, " (as read from KVM)");
	}
	return r;
}

int x86_vm_state_set(struct kvm *k, const struct x86_vm_state *s, char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	int r = x86_vm_state_validate(s, err, errlen);
	if (r)
		return r;
	errno = 0;
	for (int i = 0; i < 3; i++) {
		struct kvm_irqchip ic;
		memset(&ic, 0, sizeof(ic));
		if (i < 2) {
			ic.chip_id = i == 0 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			ic.chip.pic = s->pic[i];
		} else {
			ic.chip_id = KVM_IRQCHIP_IOAPIC;
			ic.chip.ioapic = s->ioapic;
			ic.chip.ioapic.pad = 0;
		}
		if (ioctl(k->vm_fd, KVM_SET_IRQCHIP, &ic) < 0)
			return sys_fail(err, errlen, i < 2 ? "KVM_SET_IRQCHIP (PIC)" :
							     "KVM_SET_IRQCHIP (IOAPIC)");
	}
	struct kvm_pit_state2 pit = s->pit;
	if (ioctl(k->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return sys_fail(err, errlen, "KVM_SET_PIT2");
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	cd.clock = s->clock;
	if (ioctl(k->vm_fd, KVM_SET_CLOCK, &cd) < 0)
		return sys_fail(err, errlen, "KVM_SET_CLOCK");
	return 0;
}
