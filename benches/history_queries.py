"""Times Herald's history queries through its API (docs/performance.md, "History at scale
on PostgreSQL"): each asked N times after a warm-up; prints p50 and p99 in ms.

    python3 benches/history_queries.py URL TOKEN APP_ID [N]
"""
import json, statistics, sys, time, urllib.request, random, datetime

base, token, app, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 100
H = {"Authorization": f"Bearer {token}"}

def get(path):
    req = urllib.request.Request(base + path, headers=H)
    t = time.perf_counter()
    with urllib.request.urlopen(req) as r:
        body = r.read()
    return (time.perf_counter() - t) * 1000, json.loads(body)

eps = [e["id"] for e in get(f"/api/v1/app/{app}/endpoint?limit=50")[1]["data"]]
today = datetime.datetime.now(datetime.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
mid = today - datetime.timedelta(days=15)
iso = lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
# Messages to look up: newest-first pages give ids spread over the days.
msgs = [m["id"] for m in get(f"/api/v1/app/{app}/msg?limit=250&before={iso(mid)}")[1]["data"]]
msgs += [m["id"] for m in get(f"/api/v1/app/{app}/msg?limit=250")[1]["data"]]
deep = get(f"/api/v1/app/{app}/attempt/endpoint/{eps[0]}?limit=1&before={iso(mid)}")[1]["data"]
deep_iter = deep[0]["id"] if deep else None

queries = {
    "attempts by endpoint, newest 50": lambda: f"/api/v1/app/{app}/attempt/endpoint/{random.choice(eps)}?limit=50",
    "attempts by endpoint, a page 15 days deep": lambda: f"/api/v1/app/{app}/attempt/endpoint/{eps[0]}?limit=50&iterator={deep_iter}",
    "attempts by message": lambda: f"/api/v1/app/{app}/attempt/msg/{random.choice(msgs)}",
    "attempts by endpoint, status_code_class=500": lambda: f"/api/v1/app/{app}/attempt/endpoint/{random.choice(eps)}?limit=50&status_code_class=500",
    "attempts by endpoint, class 200 in one day 15 days ago": lambda: f"/api/v1/app/{app}/attempt/endpoint/{random.choice(eps)}?limit=50&status_code_class=200&after={iso(mid - datetime.timedelta(days=1))}&before={iso(mid)}",
    "messages, newest 50": lambda: f"/api/v1/app/{app}/msg?limit=50",
    "messages in one day 15 days ago": lambda: f"/api/v1/app/{app}/msg?limit=50&after={iso(mid - datetime.timedelta(days=1))}&before={iso(mid)}",
    "one message by id": lambda: f"/api/v1/app/{app}/msg/{random.choice(msgs)}",
}
results = {}
for name, path in queries.items():
    get(path())  # warm
    times, rows = [], 0
    for _ in range(n):
        ms, body = get(path())
        times.append(ms)
        rows = len(body.get("data", [])) if isinstance(body, dict) and "data" in body else 1
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    results[name] = (p50, p99, rows)
    print(f"| {name} | {p50:.1f} ms | {p99:.1f} ms | {rows} |", flush=True)
