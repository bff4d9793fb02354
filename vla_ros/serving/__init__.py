"""Remote inference: openpi's websocket protocol (`protocol`), API keys (`security`), the robot's `remote` policy
source (`client`), and `vla-ros serve` (a policy host on Ray Serve: `host`, `deployment`, `runner`).

`protocol`, `security` and `client` import neither Ray nor torch: a robot needs numpy, msgpack and websockets.
"""
