"""sparknet's own protobuf schema for Caffe files, built in Python (no protoc, no caffe.proto).

Message and field names and numbers are Caffe's (they define the file format). Every message
and field of Caffe 1.0's caffe.proto is declared, so any Caffe file parses; what sparknet does
not implement is refused after parsing with one line naming the layer type or field
(``sparknet.caffe.support``), never silently ignored. A field Caffe does not know still fails
to parse.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

_PACKAGE = "sparknet.caffe"
_F = descriptor_pb2.FieldDescriptorProto

_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "float": _F.TYPE_FLOAT,
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}

# Enums: name -> ((value name, number), ...). Nested in Caffe; top-level here, same wire values.
_ENUMS: dict[str, tuple[tuple[str, int], ...]] = {
    "Phase": (("TRAIN", 0), ("TEST", 1)),
    "VarianceNorm": (("FAN_IN", 0), ("FAN_OUT", 1), ("AVERAGE", 2)),
    "DimCheckMode": (("STRICT", 0), ("PERMISSIVE", 1)),
    "Engine": (("DEFAULT", 0), ("CAFFE", 1), ("CUDNN", 2)),
    "NormalizationMode": (("FULL", 0), ("VALID", 1), ("BATCH_SIZE", 2), ("NONE", 3)),
    "DB": (("LEVELDB", 0), ("LMDB", 1)),
    "EltwiseOp": (("PROD", 0), ("SUM", 1), ("MAX", 2)),
    "HingeNorm": (("L1", 1), ("L2", 2)),
    "NormRegion": (("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)),
    "PoolMethod": (("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)),
    "RoundMode": (("CEIL", 0), ("FLOOR", 1)),
    "ReductionOp": (("SUM", 1), ("ASUM", 2), ("SUMSQ", 3), ("MEAN", 4)),
    "SnapshotFormat": (("HDF5", 0), ("BINARYPROTO", 1)),
    "SolverMode": (("CPU", 0), ("GPU", 1)),
    "SolverType": (
        ("SGD", 0), ("NESTEROV", 1), ("ADAGRAD", 2), ("RMSPROP", 3), ("ADADELTA", 4), ("ADAM", 5),
    ),
    "V1LayerType": (
        ("NONE", 0), ("ABSVAL", 35), ("ACCURACY", 1), ("ARGMAX", 30), ("BNLL", 2),
        ("CONCAT", 3), ("CONTRASTIVE_LOSS", 37), ("CONVOLUTION", 4), ("DATA", 5),
        ("DECONVOLUTION", 39), ("DROPOUT", 6), ("DUMMY_DATA", 32), ("EUCLIDEAN_LOSS", 7),
        ("ELTWISE", 25), ("EXP", 38), ("FLATTEN", 8), ("HDF5_DATA", 9), ("HDF5_OUTPUT", 10),
        ("HINGE_LOSS", 28), ("IM2COL", 11), ("IMAGE_DATA", 12), ("INFOGAIN_LOSS", 13),
        ("INNER_PRODUCT", 14), ("LRN", 15), ("MEMORY_DATA", 29),
        ("MULTINOMIAL_LOGISTIC_LOSS", 16), ("MVN", 34), ("POOLING", 17), ("POWER", 26),
        ("RELU", 18), ("SIGMOID", 19), ("SIGMOID_CROSS_ENTROPY_LOSS", 27), ("SILENCE", 36),
        ("SOFTMAX", 20), ("SOFTMAX_LOSS", 21), ("SPLIT", 22), ("SLICE", 33), ("TANH", 23),
        ("WINDOW_DATA", 24), ("THRESHOLD", 31),
    ),
}

# A field: (name, number, type, label, default). label: "o" optional, "r" repeated,
# "p" repeated packed. default is the text form protobuf expects, or None.
_Field = tuple[str, int, str, str, str | None]


def _o(name: str, num: int, typ: str, default: str | None = None) -> _Field:
    return (name, num, typ, "o", default)


def _r(name: str, num: int, typ: str) -> _Field:
    return (name, num, typ, "r", None)


def _p(name: str, num: int, typ: str) -> _Field:
    return (name, num, typ, "p", None)


_ENGINE = _o("engine", 1, "Engine", "DEFAULT")

_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "BlobShape": (_p("dim", 1, "int64"),),
    "BlobProto": (
        _o("shape", 7, "BlobShape"), _p("data", 5, "float"), _p("diff", 6, "float"),
        _p("double_data", 8, "double"), _p("double_diff", 9, "double"),
        _o("num", 1, "int32", "0"), _o("channels", 2, "int32", "0"),
        _o("height", 3, "int32", "0"), _o("width", 4, "int32", "0"),
    ),
    "BlobProtoVector": (_r("blobs", 1, "BlobProto"),),
    # One record of a Data layer's LMDB/LevelDB: raw pixels (``data``, CHW uint8) or an
    # encoded image (``encoded``), or ``float_data``; the label.
    "Datum": (
        _o("channels", 1, "int32"), _o("height", 2, "int32"), _o("width", 3, "int32"),
        _o("data", 4, "bytes"), _o("label", 5, "int32"), _r("float_data", 6, "float"),
        _o("encoded", 7, "bool", "false"),
    ),
    "SolverState": (
        _o("iter", 1, "int32"), _o("learned_net", 2, "string"), _r("history", 3, "BlobProto"),
        _o("current_step", 4, "int32", "0"),
    ),
    "FillerParameter": (
        _o("type", 1, "string", "constant"), _o("value", 2, "float", "0"),
        _o("min", 3, "float", "0"), _o("max", 4, "float", "1"), _o("mean", 5, "float", "0"),
        _o("std", 6, "float", "1"), _o("sparse", 7, "int32", "-1"),
        _o("variance_norm", 8, "VarianceNorm", "FAN_IN"),
    ),
    "NetState": (
        _o("phase", 1, "Phase", "TEST"), _o("level", 2, "int32", "0"), _r("stage", 3, "string"),
    ),
    "NetStateRule": (
        _o("phase", 1, "Phase"), _o("min_level", 2, "int32"), _o("max_level", 3, "int32"),
        _r("stage", 4, "string"), _r("not_stage", 5, "string"),
    ),
    "ParamSpec": (
        _o("name", 1, "string"), _o("share_mode", 2, "DimCheckMode"),
        _o("lr_mult", 3, "float", "1"), _o("decay_mult", 4, "float", "1"),
    ),
    "NetParameter": (
        _o("name", 1, "string"), _r("input", 3, "string"), _r("input_shape", 8, "BlobShape"),
        _r("input_dim", 4, "int32"), _o("force_backward", 5, "bool", "false"),
        _o("state", 6, "NetState"), _o("debug_info", 7, "bool", "false"),
        _r("layer", 100, "LayerParameter"), _r("layers", 2, "V1LayerParameter"),
    ),
    "SolverParameter": (
        _o("net", 24, "string"), _o("net_param", 25, "NetParameter"),
        _o("train_net", 1, "string"), _r("test_net", 2, "string"),
        _o("train_net_param", 21, "NetParameter"), _r("test_net_param", 22, "NetParameter"),
        _o("train_state", 26, "NetState"), _r("test_state", 27, "NetState"),
        _r("test_iter", 3, "int32"), _o("test_interval", 4, "int32", "0"),
        _o("test_compute_loss", 19, "bool", "false"),
        _o("test_initialization", 32, "bool", "true"), _o("base_lr", 5, "float"),
        _o("display", 6, "int32"), _o("average_loss", 33, "int32", "1"),
        _o("max_iter", 7, "int32"), _o("iter_size", 36, "int32", "1"),
        _o("lr_policy", 8, "string"), _o("gamma", 9, "float"), _o("power", 10, "float"),
        _o("momentum", 11, "float"), _o("weight_decay", 12, "float"),
        _o("regularization_type", 29, "string", "L2"), _o("stepsize", 13, "int32"),
        _r("stepvalue", 34, "int32"), _o("clip_gradients", 35, "float", "-1"),
        _o("snapshot", 14, "int32", "0"), _o("snapshot_prefix", 15, "string"),
        _o("snapshot_diff", 16, "bool", "false"),
        _o("snapshot_format", 37, "SnapshotFormat", "BINARYPROTO"),
        _o("solver_mode", 17, "SolverMode", "GPU"), _o("device_id", 18, "int32", "0"),
        _o("random_seed", 20, "int64", "-1"), _o("type", 40, "string", "SGD"),
        _o("delta", 31, "float", "1e-8"), _o("momentum2", 39, "float", "0.999"),
        _o("rms_decay", 38, "float", "0.99"), _o("debug_info", 23, "bool", "false"),
        _o("snapshot_after_train", 28, "bool", "true"), _o("solver_type", 30, "SolverType"),
        _o("layer_wise_reduce", 41, "bool", "true"), _r("weights", 42, "string"),
    ),
    "TransformationParameter": (
        _o("scale", 1, "float", "1"), _o("mirror", 2, "bool", "false"),
        _o("crop_size", 3, "uint32", "0"), _o("mean_file", 4, "string"),
        _r("mean_value", 5, "float"), _o("force_color", 6, "bool", "false"),
        _o("force_gray", 7, "bool", "false"),
    ),
    "LossParameter": (
        _o("ignore_label", 1, "int32"), _o("normalization", 3, "NormalizationMode", "VALID"),
        _o("normalize", 2, "bool"),
    ),
    "AccuracyParameter": (
        _o("top_k", 1, "uint32", "1"), _o("axis", 2, "int32", "1"), _o("ignore_label", 3, "int32"),
    ),
    "ArgMaxParameter": (
        _o("out_max_val", 1, "bool", "false"), _o("top_k", 2, "uint32", "1"),
        _o("axis", 3, "int32"),
    ),
    "BatchNormParameter": (
        _o("use_global_stats", 1, "bool"), _o("moving_average_fraction", 2, "float", "0.999"),
        _o("eps", 3, "float", "1e-5"),
    ),
    "BiasParameter": (
        _o("axis", 1, "int32", "1"), _o("num_axes", 2, "int32", "1"),
        _o("filler", 3, "FillerParameter"),
    ),
    # Caffe marks min and max ``required``; declared optional here so that a missing one is
    # the layer's own one-line error, not a parse error.
    "ClipParameter": (_o("min", 1, "float"), _o("max", 2, "float")),
    "ContrastiveLossParameter": (
        _o("margin", 1, "float", "1"), _o("legacy_version", 2, "bool", "false"),
    ),
    "CropParameter": (_o("axis", 1, "int32", "2"), _r("offset", 2, "uint32")),
    "EmbedParameter": (
        _o("num_output", 1, "uint32"), _o("input_dim", 2, "uint32"),
        _o("bias_term", 3, "bool", "true"), _o("weight_filler", 4, "FillerParameter"),
        _o("bias_filler", 5, "FillerParameter"),
    ),
    "ParameterParameter": (_o("shape", 1, "BlobShape"),),
    "RecurrentParameter": (
        _o("num_output", 1, "uint32", "0"), _o("weight_filler", 2, "FillerParameter"),
        _o("bias_filler", 3, "FillerParameter"), _o("debug_info", 4, "bool", "false"),
        _o("expose_hidden", 5, "bool", "false"),
    ),
    "SPPParameter": (
        _o("pyramid_height", 1, "uint32"), _o("pool", 2, "PoolMethod", "MAX"),
        _o("engine", 6, "Engine", "DEFAULT"),
    ),
    "SwishParameter": (_o("beta", 1, "float", "1"),),
    "TileParameter": (_o("axis", 1, "int32", "1"), _o("tiles", 2, "int32")),
    # The V0 format (a V1 ``layers`` entry holding ``layer { ... }``), declared so that such
    # files parse and are refused with a clear line.
    "V0LayerParameter": (
        _o("name", 1, "string"), _o("type", 2, "string"), _o("num_output", 3, "uint32"),
        _o("biasterm", 4, "bool", "true"), _o("weight_filler", 5, "FillerParameter"),
        _o("bias_filler", 6, "FillerParameter"), _o("pad", 7, "uint32", "0"),
        _o("kernelsize", 8, "uint32"), _o("group", 9, "uint32", "1"),
        _o("stride", 10, "uint32", "1"), _o("pool", 11, "PoolMethod", "MAX"),
        _o("dropout_ratio", 12, "float", "0.5"), _o("local_size", 13, "uint32", "5"),
        _o("alpha", 14, "float", "1"), _o("beta", 15, "float", "0.75"),
        _o("k", 22, "float", "1"), _o("source", 16, "string"), _o("scale", 17, "float", "1"),
        _o("meanfile", 18, "string"), _o("batchsize", 19, "uint32"),
        _o("cropsize", 20, "uint32", "0"), _o("mirror", 21, "bool", "false"),
        _r("blobs", 50, "BlobProto"), _r("blobs_lr", 51, "float"),
        _r("weight_decay", 52, "float"), _o("rand_skip", 53, "uint32", "0"),
        _o("det_fg_threshold", 54, "float", "0.5"), _o("det_bg_threshold", 55, "float", "0.5"),
        _o("det_fg_fraction", 56, "float", "0.25"), _o("det_context_pad", 58, "uint32", "0"),
        _o("det_crop_mode", 59, "string", "warp"), _o("new_num", 60, "int32", "0"),
        _o("new_channels", 61, "int32", "0"), _o("new_height", 62, "int32", "0"),
        _o("new_width", 63, "int32", "0"), _o("shuffle_images", 64, "bool", "false"),
        _o("concat_dim", 65, "uint32", "1"),
        _o("hdf5_output_param", 1001, "HDF5OutputParameter"),
    ),
    "ConcatParameter": (_o("axis", 2, "int32", "1"), _o("concat_dim", 1, "uint32", "1")),
    "ConvolutionParameter": (
        _o("num_output", 1, "uint32"), _o("bias_term", 2, "bool", "true"),
        _r("pad", 3, "uint32"), _r("kernel_size", 4, "uint32"), _r("stride", 6, "uint32"),
        _r("dilation", 18, "uint32"), _o("pad_h", 9, "uint32", "0"),
        _o("pad_w", 10, "uint32", "0"), _o("kernel_h", 11, "uint32"),
        _o("kernel_w", 12, "uint32"), _o("stride_h", 13, "uint32"),
        _o("stride_w", 14, "uint32"), _o("group", 5, "uint32", "1"),
        _o("weight_filler", 7, "FillerParameter"), _o("bias_filler", 8, "FillerParameter"),
        _o("engine", 15, "Engine", "DEFAULT"), _o("axis", 16, "int32", "1"),
        _o("force_nd_im2col", 17, "bool", "false"),
    ),
    "DataParameter": (
        _o("source", 1, "string"), _o("batch_size", 4, "uint32"),
        _o("rand_skip", 7, "uint32", "0"), _o("backend", 8, "DB", "LEVELDB"),
        _o("scale", 2, "float", "1"), _o("mean_file", 3, "string"),
        _o("crop_size", 5, "uint32", "0"), _o("mirror", 6, "bool", "false"),
        _o("force_encoded_color", 9, "bool", "false"), _o("prefetch", 10, "uint32", "4"),
    ),
    "DropoutParameter": (_o("dropout_ratio", 1, "float", "0.5"),),
    "DummyDataParameter": (
        _r("data_filler", 1, "FillerParameter"), _r("shape", 6, "BlobShape"),
        _r("num", 2, "uint32"), _r("channels", 3, "uint32"), _r("height", 4, "uint32"),
        _r("width", 5, "uint32"),
    ),
    "EltwiseParameter": (
        _o("operation", 1, "EltwiseOp", "SUM"), _r("coeff", 2, "float"),
        _o("stable_prod_grad", 3, "bool", "true"),
    ),
    "ELUParameter": (_o("alpha", 1, "float", "1"),),
    "ExpParameter": (
        _o("base", 1, "float", "-1"), _o("scale", 2, "float", "1"), _o("shift", 3, "float", "0"),
    ),
    "FlattenParameter": (_o("axis", 1, "int32", "1"), _o("end_axis", 2, "int32", "-1")),
    "HDF5DataParameter": (
        _o("source", 1, "string"), _o("batch_size", 2, "uint32"),
        _o("shuffle", 3, "bool", "false"),
    ),
    "HDF5OutputParameter": (_o("file_name", 1, "string"),),
    "HingeLossParameter": (_o("norm", 1, "HingeNorm", "L1"),),
    "ImageDataParameter": (
        _o("source", 1, "string"), _o("batch_size", 4, "uint32", "1"),
        _o("rand_skip", 7, "uint32", "0"), _o("shuffle", 8, "bool", "false"),
        _o("new_height", 9, "uint32", "0"), _o("new_width", 10, "uint32", "0"),
        _o("is_color", 11, "bool", "true"), _o("scale", 2, "float", "1"),
        _o("mean_file", 3, "string"), _o("crop_size", 5, "uint32", "0"),
        _o("mirror", 6, "bool", "false"), _o("root_folder", 12, "string", ""),
    ),
    "InfogainLossParameter": (_o("source", 1, "string"), _o("axis", 2, "int32", "1")),
    "InnerProductParameter": (
        _o("num_output", 1, "uint32"), _o("bias_term", 2, "bool", "true"),
        _o("weight_filler", 3, "FillerParameter"), _o("bias_filler", 4, "FillerParameter"),
        _o("axis", 5, "int32", "1"), _o("transpose", 6, "bool", "false"),
    ),
    "InputParameter": (_r("shape", 1, "BlobShape"),),
    "LogParameter": (
        _o("base", 1, "float", "-1"), _o("scale", 2, "float", "1"), _o("shift", 3, "float", "0"),
    ),
    "LRNParameter": (
        _o("local_size", 1, "uint32", "5"), _o("alpha", 2, "float", "1"),
        _o("beta", 3, "float", "0.75"), _o("norm_region", 4, "NormRegion", "ACROSS_CHANNELS"),
        _o("k", 5, "float", "1"), _o("engine", 6, "Engine", "DEFAULT"),
    ),
    "MemoryDataParameter": (
        _o("batch_size", 1, "uint32"), _o("channels", 2, "uint32"), _o("height", 3, "uint32"),
        _o("width", 4, "uint32"),
    ),
    "MVNParameter": (
        _o("normalize_variance", 1, "bool", "true"), _o("across_channels", 2, "bool", "false"),
        _o("eps", 3, "float", "1e-9"),
    ),
    "PoolingParameter": (
        _o("pool", 1, "PoolMethod", "MAX"), _o("pad", 4, "uint32", "0"),
        _o("pad_h", 9, "uint32", "0"), _o("pad_w", 10, "uint32", "0"),
        _o("kernel_size", 2, "uint32"), _o("kernel_h", 5, "uint32"),
        _o("kernel_w", 6, "uint32"), _o("stride", 3, "uint32", "1"),
        _o("stride_h", 7, "uint32"), _o("stride_w", 8, "uint32"),
        _o("engine", 11, "Engine", "DEFAULT"), _o("global_pooling", 12, "bool", "false"),
        _o("round_mode", 13, "RoundMode", "CEIL"),
    ),
    "PowerParameter": (
        _o("power", 1, "float", "1"), _o("scale", 2, "float", "1"), _o("shift", 3, "float", "0"),
    ),
    "PReLUParameter": (
        _o("filler", 1, "FillerParameter"), _o("channel_shared", 2, "bool", "false"),
    ),
    "PythonParameter": (
        _o("module", 1, "string"), _o("layer", 2, "string"), _o("param_str", 3, "string", ""),
        _o("share_in_parallel", 4, "bool", "false"),
    ),
    "ReductionParameter": (
        _o("operation", 1, "ReductionOp", "SUM"), _o("axis", 2, "int32", "0"),
        _o("coeff", 3, "float", "1"),
    ),
    "ReLUParameter": (_o("negative_slope", 1, "float", "0"), _o("engine", 2, "Engine", "DEFAULT")),
    "ReshapeParameter": (
        _o("shape", 1, "BlobShape"), _o("axis", 2, "int32", "0"),
        _o("num_axes", 3, "int32", "-1"),
    ),
    "ScaleParameter": (
        _o("axis", 1, "int32", "1"), _o("num_axes", 2, "int32", "1"),
        _o("filler", 3, "FillerParameter"), _o("bias_term", 4, "bool", "false"),
        _o("bias_filler", 5, "FillerParameter"),
    ),
    "SigmoidParameter": (_ENGINE,),
    "SliceParameter": (
        _o("axis", 3, "int32", "1"), _r("slice_point", 2, "uint32"),
        _o("slice_dim", 1, "uint32", "1"),
    ),
    "SoftmaxParameter": (_ENGINE, _o("axis", 2, "int32", "1")),
    "TanHParameter": (_ENGINE,),
    "ThresholdParameter": (_o("threshold", 1, "float", "0"),),
    "WindowDataParameter": (
        _o("source", 1, "string"), _o("scale", 2, "float", "1"), _o("mean_file", 3, "string"),
        _o("batch_size", 4, "uint32"), _o("crop_size", 5, "uint32", "0"),
        _o("mirror", 6, "bool", "false"), _o("fg_threshold", 7, "float", "0.5"),
        _o("bg_threshold", 8, "float", "0.5"), _o("fg_fraction", 9, "float", "0.25"),
        _o("context_pad", 10, "uint32", "0"), _o("crop_mode", 11, "string", "warp"),
        _o("cache_images", 12, "bool", "false"), _o("root_folder", 13, "string", ""),
    ),
}

# Per-layer parameter fields shared by LayerParameter (first number) and V1LayerParameter
# (second number, or None where V1 has no such field).
_LAYER_PARAMS: tuple[tuple[str, str, int, int | None], ...] = (
    ("transform_param", "TransformationParameter", 100, 36),
    ("loss_param", "LossParameter", 101, 42),
    ("accuracy_param", "AccuracyParameter", 102, 27),
    ("argmax_param", "ArgMaxParameter", 103, 23),
    ("batch_norm_param", "BatchNormParameter", 139, None),
    ("bias_param", "BiasParameter", 141, None),
    ("clip_param", "ClipParameter", 148, None),
    ("concat_param", "ConcatParameter", 104, 9),
    ("contrastive_loss_param", "ContrastiveLossParameter", 105, 40),
    ("convolution_param", "ConvolutionParameter", 106, 10),
    ("crop_param", "CropParameter", 144, None),
    ("data_param", "DataParameter", 107, 11),
    ("dropout_param", "DropoutParameter", 108, 12),
    ("dummy_data_param", "DummyDataParameter", 109, 26),
    ("eltwise_param", "EltwiseParameter", 110, 24),
    ("elu_param", "ELUParameter", 140, None),
    ("embed_param", "EmbedParameter", 137, None),
    ("exp_param", "ExpParameter", 111, 41),
    ("flatten_param", "FlattenParameter", 135, None),
    ("hdf5_data_param", "HDF5DataParameter", 112, 13),
    ("hdf5_output_param", "HDF5OutputParameter", 113, 14),
    ("hinge_loss_param", "HingeLossParameter", 114, 29),
    ("image_data_param", "ImageDataParameter", 115, 15),
    ("infogain_loss_param", "InfogainLossParameter", 116, 16),
    ("inner_product_param", "InnerProductParameter", 117, 17),
    ("input_param", "InputParameter", 143, None),
    ("log_param", "LogParameter", 134, None),
    ("lrn_param", "LRNParameter", 118, 18),
    ("memory_data_param", "MemoryDataParameter", 119, 22),
    ("mvn_param", "MVNParameter", 120, 34),
    ("parameter_param", "ParameterParameter", 145, None),
    ("pooling_param", "PoolingParameter", 121, 19),
    ("power_param", "PowerParameter", 122, 21),
    ("prelu_param", "PReLUParameter", 131, None),
    ("python_param", "PythonParameter", 130, None),
    ("recurrent_param", "RecurrentParameter", 146, None),
    ("reduction_param", "ReductionParameter", 136, None),
    ("relu_param", "ReLUParameter", 123, 30),
    ("reshape_param", "ReshapeParameter", 133, None),
    ("scale_param", "ScaleParameter", 142, None),
    ("sigmoid_param", "SigmoidParameter", 124, 38),
    ("softmax_param", "SoftmaxParameter", 125, 39),
    ("slice_param", "SliceParameter", 126, 31),
    ("spp_param", "SPPParameter", 132, None),
    ("swish_param", "SwishParameter", 147, None),
    ("tanh_param", "TanHParameter", 127, 37),
    ("threshold_param", "ThresholdParameter", 128, 25),
    ("tile_param", "TileParameter", 138, None),
    ("window_data_param", "WindowDataParameter", 129, 20),
)

_LAYER: tuple[_Field, ...] = (
    _o("name", 1, "string"), _o("type", 2, "string"), _r("bottom", 3, "string"),
    _r("top", 4, "string"), _o("phase", 10, "Phase"), _r("loss_weight", 5, "float"),
    _r("param", 6, "ParamSpec"), _r("blobs", 7, "BlobProto"),
    _r("propagate_down", 11, "bool"), _r("include", 8, "NetStateRule"),
    _r("exclude", 9, "NetStateRule"),
    *(_o(name, num, typ) for name, typ, num, _ in _LAYER_PARAMS),
)

_V1_LAYER: tuple[_Field, ...] = (
    _r("bottom", 2, "string"), _r("top", 3, "string"), _o("name", 4, "string"),
    _r("include", 32, "NetStateRule"), _r("exclude", 33, "NetStateRule"),
    _o("type", 5, "V1LayerType"), _r("blobs", 6, "BlobProto"), _r("param", 1001, "string"),
    _r("blob_share_mode", 1002, "DimCheckMode"), _r("blobs_lr", 7, "float"),
    _r("weight_decay", 8, "float"), _r("loss_weight", 35, "float"),
    _o("layer", 1, "V0LayerParameter"),
    *(_o(name, num, typ) for name, typ, _, num in _LAYER_PARAMS if num is not None),
)


def _field_proto(msg: descriptor_pb2.DescriptorProto, spec: _Field) -> None:
    name, number, typ, label, default = spec
    scope = _PACKAGE if typ == "Phase" else f"{_PACKAGE}.{msg.name}"
    field = msg.field.add(name=name, number=number)
    field.label = _F.LABEL_OPTIONAL if label == "o" else _F.LABEL_REPEATED
    if typ in _SCALARS:
        field.type = _SCALARS[typ]
    elif typ in _ENUMS:
        field.type = _F.TYPE_ENUM
        field.type_name = f".{scope}.{typ}"
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{_PACKAGE}.{typ}"
    if label == "p":
        field.options.packed = True
    if default is not None:
        field.default_value = default


def _add_enum(enum: descriptor_pb2.EnumDescriptorProto, name: str) -> None:
    for value_name, number in _ENUMS[name]:
        enum.value.add(name=value_name, number=number)


# BlobProto with its numbers as raw bytes, for writing: a packed repeated float on the wire is
# one length-delimited run of little-endian values, exactly what a bytes field holds, so a
# blob is encoded from an array's bytes instead of value by value (``weights.array_to_blob``).
# Reading keeps the repeated fields: protobuf's upb backend hands them to numpy in one step.
_RAW_BLOB_FIELDS = ("data", "diff", "double_data", "double_diff")
_RAW_BLOB = tuple(_o(spec[0], spec[1], "bytes") if spec[0] in _RAW_BLOB_FIELDS else spec
                  for spec in _MESSAGES["BlobProto"])


def _build_pool(*, raw_blobs: bool = False) -> descriptor_pool.DescriptorPool:
    file = descriptor_pb2.FileDescriptorProto(
        name="sparknet/caffe/schema.proto", package=_PACKAGE, syntax="proto2"
    )
    _add_enum(file.enum_type.add(name="Phase"), "Phase")
    messages = {**_MESSAGES, "LayerParameter": _LAYER, "V1LayerParameter": _V1_LAYER}
    if raw_blobs:
        messages["BlobProto"] = _RAW_BLOB
    for msg_name, fields in messages.items():
        msg = file.message_type.add(name=msg_name)
        # As in Caffe, enums live inside the message that uses them: value names are
        # scoped to their parent, so PoolMethod.MAX and EltwiseOp.MAX may both exist.
        for typ in dict.fromkeys(spec[2] for spec in fields):
            if typ in _ENUMS and typ != "Phase":
                _add_enum(msg.enum_type.add(name=typ), typ)
        for spec in fields:
            _field_proto(msg, spec)
    pool = descriptor_pool.DescriptorPool()  # private pool: never clashes with other protos
    pool.Add(file)
    return pool


_POOL = _build_pool()
_RAW_POOL = _build_pool(raw_blobs=True)


def message_class(name: str, *, raw_blobs: bool = False) -> Any:
    """The generated message class for a schema message, e.g. ``message_class("NetParameter")``;
    with ``raw_blobs`` its BlobProtos hold their numbers as little-endian bytes."""
    pool = _RAW_POOL if raw_blobs else _POOL
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


NetParameter: Any = message_class("NetParameter")
LayerParameter: Any = message_class("LayerParameter")
V1LayerParameter: Any = message_class("V1LayerParameter")
BlobProto: Any = message_class("BlobProto")
BlobShape: Any = message_class("BlobShape")
SolverParameter: Any = message_class("SolverParameter")
TransformationParameter: Any = message_class("TransformationParameter")
ParamSpec: Any = message_class("ParamSpec")
RawNetParameter: Any = message_class("NetParameter", raw_blobs=True)
RawBlobProto: Any = message_class("BlobProto", raw_blobs=True)


def enum_name(enum: str, number: int) -> str:
    """The name of an enum value, e.g. ``enum_name("Phase", 0) == "TRAIN"``."""
    for value_name, value in _ENUMS[enum]:
        if value == number:
            return value_name
    raise KeyError(f"{enum} has no value {number}")


def enum_number(enum: str, name: str) -> int:
    """The number of an enum value, e.g. ``enum_number("Phase", "TEST") == 1``."""
    return dict(_ENUMS[enum])[name]


__all__ = [
    "BlobProto", "BlobShape", "LayerParameter", "Message", "NetParameter", "ParamSpec",
    "RawBlobProto", "RawNetParameter", "SolverParameter", "TransformationParameter",
    "V1LayerParameter", "enum_name", "enum_number", "message_class",
]
