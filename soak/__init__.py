"""`make soak`: the chaos soak of issue #13 item 6. See soak/README.md."""
