// Command genmodel writes a synthetic safetensors model of a given size, for
// throughput benchmarks: F32 tensors with normally distributed values (like trained
// weights), shaped like transformer layers.
//
//	go run ./bench/genmodel -size 512MiB -out /tmp/big.safetensors
package main

import (
	"bufio"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/neurstore/neurstore/graph"
)

func main() {
	out := flag.String("out", "", "output .safetensors file (required)")
	sizeFlag := flag.String("size", "512MiB", "total tensor bytes (suffixes KiB, MiB, GiB)")
	dim := flag.Int("dim", 2048, "model width: tensors are dim x dim and dim x 4dim")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	size, err := parseSize(*sizeFlag)
	if *out == "" || err != nil {
		fmt.Fprintln(os.Stderr, "genmodel: need -out FILE and a valid -size:", err)
		os.Exit(2)
	}
	if err := write(*out, size, int64(*dim), *seed); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

func write(path string, size, dim int64, seed uint64) error {
	var tensors []graph.TensorInfo
	shapes := [][]int64{{dim, dim}, {dim, dim}, {dim, dim}, {dim, dim}, {4 * dim, dim}, {dim, 4 * dim}, {dim}}
	for layer := 0; size > 0; layer++ {
		for i, shape := range shapes {
			n, _ := graph.ByteSize(graph.F32, shape)
			if n > size {
				shape = []int64{size / 4}
				n = size / 4 * 4
			}
			if n == 0 {
				size = 0
				break
			}
			tensors = append(tensors, graph.TensorInfo{Name: fmt.Sprintf("layers.%d.w%d", layer, i), DType: graph.F32, Shape: shape, Size: n})
			size -= n
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 4<<20)
	r := rand.New(rand.NewPCG(seed, seed))
	buf := make([]byte, 4<<20)
	err = graph.WriteSafetensors(bw, map[string]string{"format": "pt"}, tensors, func(i int, w io.Writer) error {
		for left := tensors[i].Size; left > 0; {
			chunk := buf[:min(int64(len(buf)), left)]
			for j := 0; j+4 <= len(chunk); j += 4 {
				binary.LittleEndian.PutUint32(chunk[j:], math.Float32bits(float32(r.NormFloat64()*0.02)))
			}
			if _, err := w.Write(chunk); err != nil {
				return err
			}
			left -= int64(len(chunk))
		}
		return nil
	})
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
