/* Entry of the synthetic test guests (64-bit, CPL0, interrupts off). */
	.section .text.entry, "ax"
	.code64
	.globl _start
_start:
	lea	stack_top(%rip), %rsp
	call	guest_main
	/* guest_main returned: power off through ACPI PM1a_CNT (S5) */
	mov	$0x604, %dx
	mov	$((5 << 10) | (1 << 13)), %ax
	outw	%ax, %dx
1:	hlt
	jmp	1b

/* enter_user(fn, stack): iretq to fn at CPL3 with IOPL=3 on the given stack. */
	.globl enter_user
enter_user:
	lgdt	gdt_desc(%rip)
	/* TSS descriptor base (entry 5): patch it in now */
	lea	tss(%rip), %rax
	mov	%ax, gdt+5*8+2(%rip)
	shr	$16, %rax
	mov	%al, gdt+5*8+4(%rip)
	mov	%ah, gdt+5*8+7(%rip)
	mov	$0x28, %ax
	ltr	%ax
	mov	$0x10, %ax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	pushq	$0x1b		/* user SS */
	pushq	%rsi		/* user RSP */
	pushq	$0x3002		/* RFLAGS: IOPL=3, IF=0 */
	pushq	$0x23		/* user CS */
	pushq	%rdi		/* RIP */
	iretq

	.section .data
	.align 16
gdt:
	.quad 0
	.quad 0x00af9b000000ffff	/* 0x08 kernel code */
	.quad 0x00cf93000000ffff	/* 0x10 kernel data */
	.quad 0x00cff3000000ffff	/* 0x18 user data (DPL3) */
	.quad 0x00affb000000ffff	/* 0x20 user code (DPL3, L) */
	.quad 0x0000890000000067	/* 0x28 TSS (base patched) */
	.quad 0
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt
	.align 16
tss:
	.long 0
	.quad stack_top			/* RSP0 */
	.fill 0x68 - 12, 1, 0

	.section .bss
	.align 4096
	.space 16384
stack_top:
	.section .note.GNU-stack,"",@progbits
