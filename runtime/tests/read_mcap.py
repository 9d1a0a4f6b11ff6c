"""Reads an MCAP file with the `mcap` package (Foxglove's reader, not rtchunk's code) and prints what it holds
as JSON: the profile, each channel's topic, encoding and schema, the metadata, and every message decoded from
its JSON (images' base64 data as hex), in file order."""

import base64
import json
import sys

from mcap.reader import make_reader

with open(sys.argv[1], "rb") as stream:
    reader = make_reader(stream)
    summary = reader.get_summary()
    out = {
        "profile": reader.get_header().profile,
        "compression": sorted({index.compression for index in summary.chunk_indexes}),
        "channels": {
            channel.topic: {
                "message_encoding": channel.message_encoding,
                "schema": summary.schemas[channel.schema_id].name,
                "schema_encoding": summary.schemas[channel.schema_id].encoding,
                "count": summary.statistics.channel_message_counts[channel_id],
            }
            for channel_id, channel in summary.channels.items()
        },
        "metadata": {record.name: record.metadata for record in reader.iter_metadata()},
        "messages": [],
    }
    for schema, channel, message in reader.iter_messages(log_time_order=False):
        body = json.loads(message.data)
        if schema.name == "foxglove.RawImage":
            body["data"] = base64.b64decode(body["data"]).hex()
        out["messages"].append({"topic": channel.topic, "log_time": message.log_time, "body": body})
json.dump(out, sys.stdout)
