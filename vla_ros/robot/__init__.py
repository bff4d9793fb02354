"""The WidowX 250 6DOF (wx250s): its description (`wx250s`, pure) and its kinematics (`kinematics`, MuJoCo)."""
