"""The `tf.train.Example` / `tf.train.SequenceExample` wire schema, without importing TensorFlow.

The messages are declared from a descriptor with the same field numbers as TensorFlow's
`example.proto` and `feature.proto`, so they read and write byte-compatible records. This keeps
shard readers light enough to run in worker processes (no TensorFlow start-up, fork-safe) and on
machines that have no TensorFlow at all.
"""

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PKG = "yt8m.tfexample"


def _add_message(file_proto, name, fields, nested=()):
    msg = file_proto.message_type.add(name=name)
    msg.nested_type.extend(nested)
    for field_name, number, ftype, label, type_name in fields:
        field = msg.field.add(name=field_name, number=number, type=ftype, label=label)
        if type_name:
            field.type_name = f".{_PKG}.{type_name}"
    return msg


def _map_entry(name, value_type):
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    entry.field.add(
        name="value", number=2, type=_F.TYPE_MESSAGE, label=_F.LABEL_OPTIONAL,
        type_name=f".{_PKG}.{value_type}",
    )
    return entry


def _build():
    fp = descriptor_pb2.FileDescriptorProto(name="yt8m_tfexample.proto", package=_PKG,
                                            syntax="proto3")
    rep, opt, msg = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL, _F.TYPE_MESSAGE
    _add_message(fp, "BytesList", [("value", 1, _F.TYPE_BYTES, rep, None)])
    _add_message(fp, "FloatList", [("value", 1, _F.TYPE_FLOAT, rep, None)])
    _add_message(fp, "Int64List", [("value", 1, _F.TYPE_INT64, rep, None)])
    feature = _add_message(fp, "Feature", [
        ("bytes_list", 1, msg, opt, "BytesList"),
        ("float_list", 2, msg, opt, "FloatList"),
        ("int64_list", 3, msg, opt, "Int64List"),
    ])
    feature.oneof_decl.add(name="kind")
    for field in feature.field:
        field.oneof_index = 0
    _add_message(fp, "Features", [("feature", 1, msg, rep, "Features.FeatureEntry")],
                 [_map_entry("FeatureEntry", "Feature")])
    _add_message(fp, "FeatureList", [("feature", 1, msg, rep, "Feature")])
    _add_message(fp, "FeatureLists",
                 [("feature_list", 1, msg, rep, "FeatureLists.FeatureListEntry")],
                 [_map_entry("FeatureListEntry", "FeatureList")])
    _add_message(fp, "Example", [("features", 1, msg, opt, "Features")])
    _add_message(fp, "SequenceExample", [
        ("context", 1, msg, opt, "Features"),
        ("feature_lists", 2, msg, opt, "FeatureLists"),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.{name}"))
            for name in ("Example", "SequenceExample", "Feature")}


_classes = _build()
Example = _classes["Example"]
SequenceExample = _classes["SequenceExample"]
Feature = _classes["Feature"]
