//go:build amd64 && !purego

#include "textflag.h"

// SIMD versions of dotU8 (dot.go): sum(a[i]*b[i]) over n = len(a) unsigned bytes,
// as a uint64. Both walk the input in blocks of at most BLOCK bytes, keep 32-bit
// partial sums inside a block and widen them into 64-bit totals at the end of each
// block, so no lane can overflow whatever n is (bounds at each BLOCK below).

// BLOCK is the most bytes summed in 32-bit lanes before they are widened. It is a
// multiple of 128, so only the last block has a remainder.
#define BLOCK 65536

// func dotU8AVX2(a, b []uint8) uint64
//
// Bytes are zero-extended to 16-bit words (VPMOVZXBW) and multiplied pairwise with
// VPMADDWD, which adds adjacent products into 32-bit lanes: at most 2*255*255 =
// 130050 per instruction. Each 16 bytes of input add one such term to one lane of
// one accumulator, so a block adds at most BLOCK/16 = 4096 terms to a lane summed
// over the four accumulators: 4096*130050 < 2^29, far below 2^32 (the lanes are
// read as unsigned).
//
// Registers: SI = a, DI = b, CX = bytes left after the current block, DX = bytes
// left in the current block, Y0-Y3 = 32-bit accumulators, Y8 = 64-bit total, AX =
// scalar tail sum.
TEXT ·dotU8AVX2(SB), NOSPLIT, $0-56
	MOVQ a_base+0(FP), SI
	MOVQ a_len+8(FP), CX
	MOVQ b_base+24(FP), DI
	XORQ AX, AX
	VPXOR Y8, Y8, Y8

avx2_block:
	CMPQ CX, $16
	JB   avx2_tail           // fewer than 16 bytes left: scalar
	MOVQ CX, DX              // DX = min(CX, BLOCK)
	CMPQ DX, $BLOCK
	JBE  avx2_blocklen
	MOVQ $BLOCK, DX

avx2_blocklen:
	SUBQ  DX, CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	CMPQ  DX, $64
	JB    avx2_loop16

avx2_loop64: // 64 bytes of a and of b per iteration
	VPMOVZXBW (SI), Y4
	VPMOVZXBW 16(SI), Y5
	VPMOVZXBW 32(SI), Y6
	VPMOVZXBW 48(SI), Y7
	VPMOVZXBW (DI), Y9
	VPMOVZXBW 16(DI), Y10
	VPMOVZXBW 32(DI), Y11
	VPMOVZXBW 48(DI), Y12
	VPMADDWD  Y9, Y4, Y4
	VPMADDWD  Y10, Y5, Y5
	VPMADDWD  Y11, Y6, Y6
	VPMADDWD  Y12, Y7, Y7
	VPADDD    Y4, Y0, Y0
	VPADDD    Y5, Y1, Y1
	VPADDD    Y6, Y2, Y2
	VPADDD    Y7, Y3, Y3
	ADDQ      $64, SI
	ADDQ      $64, DI
	SUBQ      $64, DX
	CMPQ      DX, $64
	JAE       avx2_loop64

avx2_loop16: // 16 bytes at a time (only in the last block)
	CMPQ      DX, $16
	JB        avx2_widen
	VPMOVZXBW (SI), Y4
	VPMOVZXBW (DI), Y9
	VPMADDWD  Y9, Y4, Y4
	VPADDD    Y4, Y0, Y0
	ADDQ      $16, SI
	ADDQ      $16, DI
	SUBQ      $16, DX
	JMP       avx2_loop16

avx2_widen: // fold the four accumulators, zero-extend the 8 lanes, add to Y8
	VPADDD       Y1, Y0, Y0
	VPADDD       Y3, Y2, Y2
	VPADDD       Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMOVZXDQ    X0, Y0
	VPMOVZXDQ    X1, Y1
	VPADDQ       Y0, Y8, Y8
	VPADDQ       Y1, Y8, Y8
	ADDQ         DX, CX      // DX < 16 bytes left over (last block only)
	JMP          avx2_block

avx2_tail: // CX < 16 bytes, one at a time
	TESTQ   CX, CX
	JZ      avx2_done
	MOVBQZX (SI), BX
	MOVBQZX (DI), R8
	IMULQ   R8, BX
	ADDQ    BX, AX
	INCQ    SI
	INCQ    DI
	DECQ    CX
	JMP     avx2_tail

avx2_done: // AX += the four 64-bit lanes of Y8
	VEXTRACTI128 $1, Y8, X1
	VPADDQ       X1, X8, X8
	VPSHUFD      $0x4e, X8, X1
	VPADDQ       X1, X8, X8
	VMOVQ        X8, BX
	ADDQ         BX, AX
	VZEROUPPER
	MOVQ         AX, ret+48(FP)
	RET

// func dotU8AVX512VNNI(a, b []uint8) uint64
//
// VPDPBUSD multiplies unsigned bytes of one operand by signed bytes of the other
// and adds groups of four products into 32-bit lanes. b is unsigned, so it is
// biased: b' = b XOR 0x80 read as a signed byte is b-128, and
//
//	sum(a*b) = sum(a*b') + 128*sum(a)
//
// sum(a) comes from VPSADBW against zero (64-bit lanes, no overflow). A VPDPBUSD
// adds at most 4*255*128 = 130560 in magnitude to a lane, and each 64 bytes of
// input add one such term to one lane of one accumulator, so a block moves a lane
// summed over the four accumulators by at most BLOCK/64 * 130560 < 2^28, inside the
// signed 32-bit range. The lanes are sign-extended into 64-bit totals; the final
// sum is computed mod 2^64, which is exact since the result fits in a uint64.
// Tails use a byte mask (masked-off bytes load as 0, so a contributes nothing).
//
// Registers: SI = a, DI = b, CX = bytes left after the current block, DX = bytes
// left in the current block, Z0-Z3 = 32-bit accumulators, Z8 = 64-bit total of
// sum(a*b'), Z9 = 64-bit sum(a), Z30 = zero, Z31 = 0x80 in every byte.
TEXT ·dotU8AVX512VNNI(SB), NOSPLIT, $0-56
	MOVQ         a_base+0(FP), SI
	MOVQ         a_len+8(FP), CX
	MOVQ         b_base+24(FP), DI
	MOVL         $0x80808080, AX
	VPBROADCASTD AX, Z31
	VPXORQ       Z30, Z30, Z30
	VPXORQ       Z8, Z8, Z8
	VPXORQ       Z9, Z9, Z9

v512_block:
	TESTQ CX, CX
	JZ    v512_done
	MOVQ  CX, DX             // DX = min(CX, BLOCK)
	CMPQ  DX, $BLOCK
	JBE   v512_blocklen
	MOVQ  $BLOCK, DX

v512_blocklen:
	SUBQ   DX, CX
	VPXORQ Z0, Z0, Z0
	VPXORQ Z1, Z1, Z1
	VPXORQ Z2, Z2, Z2
	VPXORQ Z3, Z3, Z3
	CMPQ   DX, $128
	JB     v512_loop64

v512_loop128: // 128 bytes of a and of b per iteration
	VMOVDQU64 (SI), Z4
	VMOVDQU64 64(SI), Z5
	VPXORQ    (DI), Z31, Z6  // b - 128 as signed bytes
	VPXORQ    64(DI), Z31, Z7
	VPDPBUSD  Z6, Z4, Z0     // Z0 += a (unsigned) * b' (signed), by fours
	VPDPBUSD  Z7, Z5, Z1
	VPSADBW   Z30, Z4, Z4    // sums of a by eights
	VPSADBW   Z30, Z5, Z5
	VPADDQ    Z4, Z9, Z9
	VPADDQ    Z5, Z9, Z9
	ADDQ      $128, SI
	ADDQ      $128, DI
	SUBQ      $128, DX
	CMPQ      DX, $128
	JAE       v512_loop128

v512_loop64: // 64 bytes (only in the last block)
	CMPQ      DX, $64
	JB        v512_masked
	VMOVDQU64 (SI), Z4
	VPXORQ    (DI), Z31, Z6
	VPDPBUSD  Z6, Z4, Z2
	VPSADBW   Z30, Z4, Z4
	VPADDQ    Z4, Z9, Z9
	ADDQ      $64, SI
	ADDQ      $64, DI
	SUBQ      $64, DX

v512_masked: // DX < 64 bytes left (last block only): one masked step
	TESTQ       DX, DX
	JZ          v512_widen
	MOVQ        $-1, R8
	BZHIQ       DX, R8, R8   // low DX bits set
	KMOVQ       R8, K1
	VMOVDQU8.Z  (SI), K1, Z4
	VMOVDQU8.Z  (DI), K1, Z6
	VPXORQ      Z31, Z6, Z6  // masked-off bytes become -128, but a is 0 there
	VPDPBUSD    Z6, Z4, Z3
	VPSADBW     Z30, Z4, Z4
	VPADDQ      Z4, Z9, Z9

v512_widen: // fold the four accumulators, sign-extend the 16 lanes, add to Z8
	VPADDD        Z1, Z0, Z0
	VPADDD        Z3, Z2, Z2
	VPADDD        Z2, Z0, Z0
	VEXTRACTI64X4 $1, Z0, Y1
	VPMOVSXDQ     Y0, Z0
	VPMOVSXDQ     Y1, Z1
	VPADDQ        Z0, Z8, Z8
	VPADDQ        Z1, Z8, Z8
	JMP           v512_block

v512_done: // result = sum(Z8) + 128*sum(Z9), mod 2^64
	VPSLLQ        $7, Z9, Z9
	VPADDQ        Z9, Z8, Z8
	VEXTRACTI64X4 $1, Z8, Y1
	VPADDQ        Y1, Y8, Y8
	VEXTRACTI128  $1, Y8, X1
	VPADDQ        X1, X8, X8
	VPSHUFD       $0x4e, X8, X1
	VPADDQ        X1, X8, X8
	VMOVQ         X8, AX
	VZEROUPPER
	MOVQ          AX, ret+48(FP)
	RET
