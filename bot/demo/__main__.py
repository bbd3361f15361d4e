"""Run the demo shop app: ``python -m bot.demo`` (DEMO_HOST/DEMO_PORT, default 127.0.0.1:8080)."""
from bot.demo.app import main

if __name__ == "__main__":
    main()
