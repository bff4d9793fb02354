"""Remote inference: openpi's websocket protocol (`protocol`), API keys (`security`), the robot's `remote` policy
source (`client`), and `vla-ros serve`: a policy host (`host`) answering through one `session` logic, behind Ray
Serve (`deployment`, `runner`) with either Serve's proxy or each replica's own listener (`replica_front`) in front.

`protocol`, `security` and `client` import neither Ray nor torch: a robot needs numpy, msgpack and websockets.
"""
