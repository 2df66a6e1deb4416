"""Where a trained model looked: Grad-CAM, occlusion, the pointing game against drawn
findings, and the pictures of their maps."""
