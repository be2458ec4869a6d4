"""A failed run alerts: SNS on moto's server, and a Prefect notification block posting to a real
HTTP endpoint on 127.0.0.1. Neither message may carry a password."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET = "N0t-In-Any-Alert"


@pytest.fixture
def webhook():
    """A real HTTP endpoint on 127.0.0.1 that records what is posted to it."""
    posted: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            posted.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", posted
    server.shutdown()


def test_failed_run_alerts_sns_and_a_notification_block_without_secrets(
    databases, s3_lake_url, prefect_api, monkeypatch, sns_inbox, webhook
):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.etl import totesys_etl

    topic, received = sns_inbox
    url, posted = webhook
    block_name = f"totes-alerts-{uuid.uuid4().hex[:8]}"
    CustomWebhookNotificationBlock(
        name="totes", url=url, json_data={"subject": "{{subject}}", "body": "{{body}}"}
    ).save(block_name)
    missing_source = databases.source_url.replace("//postgres:@", f"//postgres:{SECRET}@").replace("/source_", "/gone_")
    monkeypatch.setenv("TOTES_SOURCE_URL", missing_source)
    monkeypatch.setenv("TOTES_WAREHOUSE_URL", databases.warehouse_url)
    monkeypatch.setenv("TOTES_LAKE_URL", s3_lake_url)
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    monkeypatch.setenv("TOTES_ALERT_BLOCK", f"custom-webhook/{block_name}")

    with pytest.raises(Exception, match="does not exist"):
        totesys_etl()

    messages = received()
    assert len(messages) == 1  # the failing subflow alerts through its parent, once
    alert = messages[0]
    assert alert["Subject"].startswith("totes: totesys-etl (run without a deployment) failed in read-source-horizon")
    assert "does not exist" in alert["Message"]
    assert "/runs/flow-run/" in alert["Message"]
    assert SECRET not in json.dumps(alert)
    assert len(posted) == 1
    assert "read-source-horizon" in posted[0] and SECRET not in posted[0]
