"""Request and response models, one family per resource; OpenAI's field names where OpenAI has them."""
