"""Files attached to messages: uploaded and checked, kept, and given to the model."""
