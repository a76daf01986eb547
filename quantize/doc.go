// Package quantize turns a float student checkpoint into an INT4 one with
// AWQ (activation-aware weight quantization, Lin et al. 2023) or plain
// round-to-nearest, writes it in AutoAWQ's "GEMM" layout so vLLM and HF
// transformers load it, and runs it with the weights kept packed.
//
// # Method
//
// Quantize runs the float model (LoRA merged) on calibration sequences and
// records, for the input of every linear layer of every decoder block, the
// mean |x| per input channel (s_x) and the Gram matrix Σ x xᵀ over all
// calibration tokens. Layers that share an input are searched together,
// with the inverse scale folded into the op producing that input, as the
// paper and AutoAWQ do:
//
//	input_layernorm          -> q_proj, k_proj, v_proj
//	v_proj (output rows)     -> o_proj   (GQA included: the query heads of a KV head share one scale)
//	post_attention_layernorm -> gate_proj, up_proj
//	up_proj (output rows)    -> down_proj
//
// For α on a grid of 20 points in [0, 1) two candidates are tried: the
// paper's s = s_x^α and AutoAWQ's default "duo scaling" s = s_x^α / s_w^(1-α),
// s_w being the mean over the output rows of |w| divided by its group's
// max |w|; both are normalised by sqrt(max(s)·min(s)). Each candidate is
// scored by the mean squared error of the group's outputs against full
// precision, Q(W·diag(s))·diag(s)⁻¹ against W, computed exactly over all
// calibration tokens as trace(ΔW G ΔWᵀ)/tokens on the backend (plain α = 0
// is RTN, so the chosen scales never do worse than RTN on the calibration
// text). The
// scored output is each linear layer's own output (AutoAWQ scores the whole
// attention or MLP block). With ClipSearch, AWQ's clipping search then
// shrinks every (output row, group) range to the clamp, among 10 steps down
// to half the max, that minimises that group's output error (q and k are
// not clipped, as in AutoAWQ). Statistics come from the float model (one
// pass for small models; AutoAWQ feeds each block the output of the already
// quantized ones).
//
// The quantizer is asymmetric INT4 with a zero point per group of G input
// channels (G = 32, 64 or 128): s = (max - min)/15 rounded to float16,
// z = clamp(round(-min/s), 0, 15), q = clamp(round(w/s) + z, 0, 15),
// w ≈ (q - z)·s. The group range always includes 0. MethodRTN applies the
// same quantizer without scales or clipping (the baseline); MethodINT8 is
// symmetric INT8 per output channel.
//
// Embeddings, norms and lm_head stay 16-bit (float16). Layers listed in
// Options.ModulesToNotConvert (substrings of module paths, as vLLM and
// transformers match them) stay 16-bit, and so do layers whose input count
// is not a multiple of G or whose output count is not a multiple of 8, and
// the partners of a 16-bit q/k/v or gate/up layer (vLLM fuses those and
// quantizes a fused layer as a whole); these are added to
// modules_to_not_convert by path.
//
// # Format
//
// Save writes model.safetensors, config.json and the source's tokenizer
// files. A quantized linear layer <m> (HF Linear weight [out, in]) is
//
//	<m>.qweight  I32 [in, out/8]   8 codes per int32; nibble j (bits 4j..4j+3) of
//	                               column c holds output 8c + [0 2 4 6 1 3 5 7][j]
//	<m>.qzeros   I32 [in/G, out/8] the zero points, packed the same way
//	<m>.scales   F16 [in/G, out]
//	<m>.bias     F16 [out]         when the layer has one (Qwen2 q/k/v)
//
// and the weight is (q - z)·s, the row i of qweight using row i/G of qzeros
// and scales. config.json gets torch_dtype float16 and
//
//	"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": G,
//	  "zero_point": true, "version": "gemm", "modules_to_not_convert": [...] or null}
//
// INT8 uses this package's own layout: <m>.weight I8 [out, in] and
// <m>.weight_scale F16 [out, 1] (w = q·s), with quantization_config
// {"quant_method": "distillery_int8", "bits": 8, "group_size": -1, ...};
// other tools do not read it.
//
// # Inference
//
// Load reads a plain checkpoint through model.Load, and an AWQ (any AutoAWQ
// GEMM checkpoint of a supported architecture, e.g. one from the Hub) or
// INT8 one into a model.Model whose packed int32 words and float16 tensors
// stay as stored in memory. The Params wrapper casts 16-bit tensors to the
// compute dtype inside the graph, and its Linear dequantizes each INT4 layer
// per group in every forward pass: the packed words are transposed (an
// eighth of the data), split into nibbles in output order with shifts and
// masks, multiplied by their group's scale and fed to the matmul, the zero
// points being applied on the small side as (Σ_{i∈g} x_i)·z·s. Generate,
// Logits and the KV cache work unchanged. On the pure-Go CPU backend the
// unpacking and the float16 casts cost more time than the smaller weights
// save (INT4 generates slower than f32 there); the gain is memory, and speed
// on memory-bound GPUs.
//
// # Report
//
// MemorySizes and CheckpointSizes count weight bytes against a 16-bit copy
// (linear layers, embeddings and the rest apart), ResidentBytes reads the
// process's VmRSS, Perplexity measures held-out text, and Compare sets fp,
// RTN and AWQ side by side with an optional task metric from the caller.
package quantize
