"""A long mixed-load run against one broker process (`make soak`): data checks at the
end, and a check that the broker's RSS, file descriptors and threads stayed flat."""
