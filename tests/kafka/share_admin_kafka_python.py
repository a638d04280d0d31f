"""kafka-python's KafkaAdminClient on a share group, as an operator's script uses it:
list_groups with the type and state filters (ListGroups v5), then delete_groups
(DeleteGroups). Prints one JSON line: what each call answered.

    share_admin_kafka_python.py BOOTSTRAP GROUP
"""

import json
import sys

from kafka import KafkaAdminClient

bootstrap, group = sys.argv[1:3]
admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10000)


def listed(**filters):
    """The groups listed with these filters, as (id, state, type, protocol type)."""
    return sorted(
        [g["group_id"], g["group_state"], g["group_type"], g["protocol_type"]]
        for g in admin.list_groups(**filters)
    )


out = {
    "share": listed(types_filter=["share"]),
    "share_empty": listed(states_filter=["Empty"], types_filter=["share"]),
    "share_stable": listed(states_filter=["Stable"], types_filter=["share"]),
    "consumer": listed(types_filter=["consumer", "classic"]),
    # {group id: "OK" or the error's class name}
    "deleted": admin.delete_groups([group]),
}
out["share_after"] = listed(types_filter=["share"])
out["deleted_again"] = admin.delete_groups([group])
admin.close()
print(json.dumps(out))
