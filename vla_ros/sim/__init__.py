"""The simulated WidowX 250 workcell (MuJoCo): robot model, kinematics, tasks, scripted expert, rollouts."""
