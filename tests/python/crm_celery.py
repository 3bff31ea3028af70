"""The Python side of the broker interop tests: real Celery against the same Redis as `crm`.

Settings come from the environment, as the Rust side passes them:
  CRM_BROKER_URL         redis://127.0.0.1:6379/0
  CRM_BROKER_KEY_PREFIX  kombu's and the result backend's global_keyprefix (each test its own)
  CRM_BROKER_QUEUE       the queue (default: celery)
  CRM_BROKER_VISIBILITY_TIMEOUT  kombu's visibility_timeout, in seconds (default: kombu's)
  CRM_TEST_OUT           (worker) file each task run appends one JSON line to

Usage:
  python crm_celery.py send TASK [TIMEOUT]   send_task(TASK), then AsyncResult.get(): prints
                                             {"id", "status", "result"} as JSON; exit 1 on a
                                             task failure or timeout
  python crm_celery.py worker CODE...        a Celery worker with a task crm.tasks.CODE for
                                             each CODE (solo pool, or prefork with
                                             CRM_CELERY_CONCURRENCY > 1)
  python crm_celery.py events SECONDS        prints "ready" on stderr once subscribed, then
                                             the monitoring events seen in SECONDS
  python crm_celery.py bench-send N          sends N crm.tasks.noop tasks, prints the seconds
  python crm_celery.py report-worker         a Celery worker whose crm.tasks.generate_crm_report
                                             does what crm's does: asks CRM_GRAPHQL_URL for the
                                             totals (one kept-alive connection per process) and
                                             appends the report line to
                                             CRM_LOG_DIR/crm_report_log.txt (the benchmark's
                                             Python side)
"""

import datetime
import decimal
import http.client
import json
import os
import sys
import time
import urllib.parse

from celery import Celery

url = os.environ.get("CRM_BROKER_URL", "redis://127.0.0.1:6379/0")
prefix = os.environ.get("CRM_BROKER_KEY_PREFIX", "")
queue = os.environ.get("CRM_BROKER_QUEUE", "celery")

app = Celery("crm_interop", broker=url, backend=url)
app.conf.update(
    task_default_queue=queue,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
)
transport_options = {}
if prefix:
    transport_options["global_keyprefix"] = prefix
    app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
if os.environ.get("CRM_BROKER_VISIBILITY_TIMEOUT"):
    transport_options["visibility_timeout"] = float(os.environ["CRM_BROKER_VISIBILITY_TIMEOUT"])
app.conf.broker_transport_options = transport_options


def register(code):
    out = os.environ.get("CRM_TEST_OUT")

    @app.task(name=f"crm.tasks.{code}", bind=True)
    def run(self, *args, **kwargs):
        record = {
            "task": self.name,
            "id": self.request.id,
            "crm_tick": getattr(self.request, "crm_tick", None),
            "args": list(args),
            "kwargs": kwargs,
        }
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(record) + "\n")
        return f"python ran {self.name}"

    return run


# The operation crm's GraphQL client sends for the report (cynic's rendering of it).
REPORT_QUERY = "query Report {\n  totalCustomers\n  totalOrders\n  totalRevenue\n}\n"
_graphql = None


def graphql(query):
    """POSTs one operation to CRM_GRAPHQL_URL on a connection kept alive across tasks (opened
    again once if the server closed it), as crm's pooled client does; returns `data`."""
    global _graphql
    url = urllib.parse.urlsplit(os.environ.get("CRM_GRAPHQL_URL", "http://localhost:8000/graphql"))
    body = json.dumps({"query": query})
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = os.environ.get("CRM_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    for attempt in (1, 2):
        if _graphql is None:
            _graphql = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        try:
            _graphql.request("POST", url.path or "/", body, headers)
            response = _graphql.getresponse()
            answer = json.loads(response.read())
        except (http.client.HTTPException, OSError):
            _graphql.close()
            _graphql = None
            if attempt == 2:
                raise
            continue
        if response.status != 200 or answer.get("errors"):
            raise RuntimeError(f"HTTP {response.status}: {answer.get('errors')}")
        return answer["data"]


def register_report():
    log = os.path.join(os.environ.get("CRM_LOG_DIR", "/tmp"), "crm_report_log.txt")

    @app.task(name="crm.tasks.generate_crm_report")
    def generate_crm_report(*args, **kwargs):
        data = graphql(REPORT_QUERY)
        revenue = decimal.Decimal(str(data["totalRevenue"])).quantize(
            decimal.Decimal("0.01"), rounding=decimal.ROUND_HALF_UP)
        line = (f"Report: {data['totalCustomers']} customers, {data['totalOrders']} orders, "
                f"{revenue} revenue.")
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{stamp} - {line}\n".encode())
        finally:
            os.close(fd)
        return line

    return generate_crm_report


def run_worker():
    concurrency = int(os.environ.get("CRM_CELERY_CONCURRENCY", "1"))
    pool = "solo" if concurrency == 1 else "prefork"
    app.worker_main(["worker", f"--pool={pool}", f"--concurrency={concurrency}",
                     "--loglevel=" + os.environ.get("CRM_CELERY_LOGLEVEL", "INFO"),
                     "--without-heartbeat", "--without-mingle", "--without-gossip",
                     "-Q", queue])


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "send":
        task = argv[2]
        timeout = float(argv[3]) if len(argv) > 3 else 30.0
        result = app.send_task(task)
        try:
            value = result.get(timeout=timeout)
            print(json.dumps({"id": result.id, "status": result.status, "result": value}))
            return 0
        except Exception as e:  # the task failed, or no result came in time
            print(json.dumps({"id": result.id, "status": result.status,
                              "error": f"{type(e).__name__}: {e}"}))
            return 1
    if command == "worker":
        for code in argv[2:]:
            register(code)
        run_worker()
        return 0
    if command == "report-worker":
        register_report()
        run_worker()
        return 0
    if command == "events":
        # Listens to Celery's monitoring events (what Flower reads) for SECONDS, then prints
        # [{"type", "hostname", "uuid"}] as JSON.
        seconds = float(argv[2])
        seen = []

        def on_event(event):
            seen.append({"type": event.get("type"), "hostname": event.get("hostname"),
                         "uuid": event.get("uuid")})

        import threading
        subscribed = threading.Event()

        def listen():
            with app.connection() as conn:
                receiver = app.events.Receiver(conn, handlers={"*": on_event})
                # Called once the consumer is subscribed: the caller waits for "ready" on
                # stderr before sending, so no event is missed however slow Python starts.
                receiver.on_consume_ready = lambda *args, **kwargs: subscribed.set()
                receiver.capture(limit=None)

        threading.Thread(target=listen, daemon=True).start()
        if not subscribed.wait(60):
            print("the event receiver did not subscribe within 60 s", file=sys.stderr, flush=True)
            os._exit(1)
        print("ready", file=sys.stderr, flush=True)
        time.sleep(seconds)
        print(json.dumps(seen), flush=True)
        os._exit(0)
    if command == "bench-send":
        n = int(argv[2])
        start = time.monotonic()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                app.send_task("crm.tasks.noop", producer=producer)
        print(f"{time.monotonic() - start:.3f}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
