"""The serving pipeline, free of Flask: what happens to a completion request between the
door it came in by (a view today; the batch worker and the cache next) and its answer.

    inbound.py    the request as the pipeline sees it, and what admission took
    pipeline.py   serve(): validate → route → admit (tokens) → hold (money) → send → answer
    targets.py    the caller's endpoints and the model it asked for
    failover.py   POST to a replica, failing over before the first byte
    call.py       one admitted call, carried to its single usage row
    answers.py    the upstream's answer as ours: JSON, an SSE relay, or its error
"""
